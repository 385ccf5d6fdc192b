"""Parsers for the upstream id lists (data spec §1.2): strip CR, skip blanks, validate ids."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataFileError

VGGSOUND_ID = re.compile(r"^[A-Za-z0-9_-]{11}_[0-9]{6}$")
FLICKR_ID = re.compile(r"^[0-9]{9,11}$")
ID_PATTERNS = {"vggsound": VGGSOUND_ID, "flickr": FLICKR_ID}
NEG_SEPARATOR = "__neg__"


def normalize_id(raw: str) -> str:
    """Strip whitespace/CR, directory prefixes and a `.png`/`.wav`/`.mp4` suffix."""
    value = raw.strip().replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".png", ".wav", ".mp4", ".jpg"):
        if value.endswith(suffix):
            return value[: -len(suffix)]
    return value


def check_id(value: str, kind: str, path: Path | str, line: int) -> str:
    """Validate one id against its dataset's pattern; raise naming the file and line."""
    if not ID_PATTERNS[kind].match(value):
        raise DataFileError(f"{path}: line {line}: invalid {kind} id {value!r}")
    if NEG_SEPARATOR in value:
        raise DataFileError(f"{path}: line {line}: id {value!r} contains {NEG_SEPARATOR!r}")
    return value


def _text_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: cannot read id list: {exc}") from exc


def read_id_list(path: str | Path, kind: str, *, first_column: bool = True) -> list[str]:
    """Ids of a one-id-per-line list or a CSV whose first column is the id (other columns ignored)."""
    path = Path(path)
    ids = []
    for number, line in enumerate(_text_lines(path), start=1):
        line = line.strip()
        if not line:
            continue
        field = line.split(",", 1)[0] if first_column else line
        ids.append(check_id(normalize_id(field), kind, path, number))
    return ids


@dataclass(frozen=True)
class NegativePair:
    """One row of SLAVC's `*_test_plus_silent.csv`: a frame paired with another clip's audio."""

    video: str
    audio: str

    @property
    def key(self) -> str:
        return f"{self.video}{NEG_SEPARATOR}{self.audio}"


def read_negative_pairs(path: str | Path, kind: str) -> list[NegativePair]:
    """Rows of a `video,audio,label` CSV (header required, label must be `non-sounding`)."""
    path = Path(path)
    reader = csv.reader(io.StringIO("\n".join(_text_lines(path))))
    header = next(reader, None)
    if header is None or [h.strip() for h in header[:3]] != ["video", "audio", "label"]:
        raise DataFileError(f"{path}: expected header video,audio,label, got {header}")
    pairs = []
    for number, row in enumerate(reader, start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 3 or row[2].strip() != "non-sounding":
            raise DataFileError(f"{path}: line {number}: expected video,audio,non-sounding, got {row}")
        video = check_id(normalize_id(row[0]), kind, path, number)
        audio = check_id(normalize_id(row[1]), kind, path, number)
        pairs.append(NegativePair(video, audio))
    return pairs


def read_vggsound_csv(path: str | Path) -> list[tuple[str, str, str]]:
    """(clip id, label, split) rows of VGGSound's `vggsound.csv` (`ytid,start,label,split`), real CSV parsing."""
    path = Path(path)
    rows = []
    reader = csv.reader(io.StringIO("\n".join(_text_lines(path))))
    for number, row in enumerate(reader, start=1):
        if not row:
            continue
        if len(row) != 4:
            raise DataFileError(f"{path}: line {number}: expected 4 fields, got {len(row)}")
        ytid, start, label, split = (field.strip() for field in row)
        clip = check_id(f"{ytid}_{int(start):06d}", "vggsound", path, number)
        rows.append((clip, label, split))
    return rows


def read_vggsound_split_csv(path: str | Path) -> list[tuple[str, str]]:
    """(clip id, label) rows of VGGSound's `test.csv`/`AStest.csv` (`<id>.mp4,<label>`, labels may be quoted)."""
    path = Path(path)
    reader = csv.reader(io.StringIO("\n".join(_text_lines(path))))
    rows = []
    for number, row in enumerate(reader, start=1):
        if not row:
            continue
        rows.append((check_id(normalize_id(row[0]), "vggsound", path, number), row[1].strip() if len(row) > 1 else ""))
    return rows
