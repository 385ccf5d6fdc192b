"""Run `run_prepare` over local mp4s with a fake source (a subprocess that tests can SIGKILL).

Usage: python _prepare_driver.py CONFIG.json, where CONFIG holds `media` (clip id -> mp4 path), `rows` (PlanRow
field dicts), `out_dir`, `split_dir`, `samples_per_shard`, `delay` (seconds per acquisition) and optionally
`num_parts`/`part`.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from avsl_bench.data.plan import PlanRow
from avsl_bench.data.prepare import run_prepare
from avsl_bench.data.sources.base import AcquireResult, ClipRef, Status


class LocalSource:
    """Serves mp4s from a dict; copies them into the clip cache like a real source; slow on purpose."""

    name = "local"

    def __init__(self, media: dict[str, str], delay: float = 0.0) -> None:
        self.media = media
        self.delay = delay

    def acquire(self, clip: ClipRef, cache_dir: Path) -> AcquireResult:
        time.sleep(self.delay)
        if clip.clip_id not in self.media:
            return AcquireResult(Status.UNAVAILABLE, None, f"not_in_mirror: {clip.clip_id}", 1)
        target = Path(cache_dir) / f"{clip.clip_id}.mp4"
        if not target.exists():
            tmp = target.with_suffix(".part")
            shutil.copyfile(self.media[clip.clip_id], tmp)
            tmp.replace(target)
        return AcquireResult(Status.SUCCESS, target, None, 1)


def rows_from_config(config: dict) -> list[PlanRow]:
    return [PlanRow(**{**r, "boxes": tuple(tuple(b) for b in r.get("boxes", ()))}) for r in config["rows"]]


def main(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    summary = run_prepare(
        rows_from_config(config),
        out_dir=config["out_dir"],
        split_dir=config["split_dir"],
        source=LocalSource(config["media"], config.get("delay", 0.0)),
        workers=2,
        cut_workers=2,
        samples_per_shard=config["samples_per_shard"],
        num_parts=config.get("num_parts", 1),
        part=config.get("part", 0),
        progress=False,
    )
    print(json.dumps({"written": summary.written, "skipped": summary.skipped, "counts": summary.counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
