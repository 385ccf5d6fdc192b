"""The contract every media source fulfils: one clip in, one classified outcome out."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class Status(str, enum.Enum):
    """Per-clip outcome recorded in the manifest (data spec §7)."""

    SUCCESS = "success"
    UNAVAILABLE = "unavailable"  # permanent: private, removed, 403/404/410, not in mirror
    FAILED_DOWNLOAD = "failed_download"  # transient after retries, timeout, bot check, corrupt archive
    FAILED_CUT = "failed_cut"  # no stream, no frame at >= 5 s, ffmpeg error


@dataclass(frozen=True)
class ClipRef:
    """One clip to acquire: VGGSound id `<ytid>_<start:06d>` (Flickr: numeric id, start 0)."""

    clip_id: str
    ytid: str
    start: int


@dataclass(frozen=True)
class AcquireResult:
    """What acquiring one clip produced. `path` is set only on success."""

    status: Status
    path: Path | None
    error: str | None
    attempts: int


class Source(Protocol):
    """A media source. `acquire` never raises for per-clip problems: it classifies them."""

    name: str

    def acquire(self, clip: ClipRef, cache_dir: Path) -> AcquireResult:  # pragma: no cover - protocol
        ...
