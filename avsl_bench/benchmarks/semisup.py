"""Label splits of the semi-supervised methods (DMT, XPL; baselines spec §3.7 "Label splits"): fixed sha256 ranks.

A partition ranks a pinned id list by sha256(`salt` + id) (hex digest, ascending; the id breaks a tie) and cuts the
ranking into consecutive parts, in the order the spec names them:

| partition | ranked list | salt | parts, in rank order |
|---|---|---|---|
| `flickr-sup-train` | flickr_sup_train (4,750) | `semisup\\|` | val 500, labelled 4,250 |
| `vggss-semisup250` | vggss_test (5,158) | `semisup-vggss\\|` | test 250, val 500, labelled 4,250, unused 158 |

The parts are a pure function of the pinned list (no seed, no randomness), so every user gets the same split.
`prepare flickr-sup-train` / `vggss-semisup250-train` write `labelled` as split `train` (samples marked
`"labelled": true`) and `val` as split `val` (which the trainer refuses); the benchmark `vggss-semisup250` scores
the 250 `test` clips. The unlabelled pools: `flickr-144k-semisup-u` / `flickr-10k-semisup-u` (the `-noleak` list
minus every flickr_sup_train id, i.e. minus L and val) and `vggsound-144k-noleak` (already without every VGGSound
test clip, hence without all 5,158 VGG-SS clips).

    >>> parts = VGGSS_SEMISUP250.split(ids)                 # doctest: +SKIP
    >>> {k: len(v) for k, v in parts.items()}               # doctest: +SKIP
    {'test': 250, 'val': 500, 'labelled': 4250, 'unused': 158}
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Iterable

from ..errors import DataFileError

__all__ = [
    "FLICKR_SEMISUP", "PARTITIONS", "RankPartition", "VGGSS_SEMISUP250", "flickr_semisup_parts", "get_partition",
    "vggss_semisup_parts",
]  # fmt: skip


@dataclass(frozen=True)
class RankPartition:
    """Consecutive slices of a list ranked by sha256(`salt` + id)."""

    name: str
    salt: str
    source: str  # the file id of the ranked list
    parts: tuple[tuple[str, int], ...]  # (part name, size) in rank order

    @property
    def total(self) -> int:
        return sum(n for _, n in self.parts)

    @property
    def part_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.parts)

    def rank_key(self, clip_id: str) -> str:
        return hashlib.sha256((self.salt + clip_id).encode("utf-8")).hexdigest()

    def ranked(self, ids: Iterable[str]) -> list[str]:
        """The ids in rank order: sha256(salt + id) ascending, then the id."""
        return sorted(ids, key=lambda i: (self.rank_key(i), i))

    def bounds(self, part: str) -> tuple[int, int]:
        """[start, stop) of a part in the ranking."""
        start = 0
        for name, n in self.parts:
            if name == part:
                return start, start + n
            start += n
        raise DataFileError(f"partition {self.name} has no part {part!r} (parts: {', '.join(self.part_names)})")

    def split(self, ids: Iterable[str], *, where: object = None) -> dict[str, tuple[str, ...]]:
        """part -> ids (rank order). The list must hold exactly `total` distinct ids."""
        ids = list(ids)
        where = where or self.source
        if len(set(ids)) != len(ids):
            raise DataFileError(f"{where}: duplicate ids; the {self.name} label split needs distinct ids")
        if len(ids) != self.total:
            raise DataFileError(f"{where}: the {self.name} label split ranks {self.total:,} ids "
                                f"({self.describe()}), got {len(ids):,}")  # fmt: skip
        ranked = self.ranked(ids)
        return {name: tuple(ranked[slice(*self.bounds(name))]) for name in self.part_names}

    def describe(self, part: str | None = None) -> str:
        """Human-readable definition (recorded in the manifests of the prepared splits)."""
        rule = f"{self.source} ranked by sha256({self.salt!r} + id)"
        if part is None:
            return rule + ": " + ", ".join(f"{n:,} {name}" for name, n in self.parts)
        start, stop = self.bounds(part)
        return f"{rule}, ranks [{start}, {stop}) = {part}"


#: baselines spec §3.7: "flickr_sup_train sorted by sha256("semisup|" + id): first 500 = val, remaining 4,250 = L".
FLICKR_SEMISUP = RankPartition("flickr-sup-train", "semisup|", "flickr_sup_train", (("val", 500), ("labelled", 4250)))
#: baselines spec §3.7: sha256("semisup-vggss|" + id) ranking "(250 test, 500 val, 4,250 L, 158 unused)".
VGGSS_SEMISUP250 = RankPartition(
    "vggss-semisup250", "semisup-vggss|", "vggss_test",
    (("test", 250), ("val", 500), ("labelled", 4250), ("unused", 158)),
)
PARTITIONS = {p.name: p for p in (FLICKR_SEMISUP, VGGSS_SEMISUP250)}


def get_partition(name: str) -> RankPartition:
    if name not in PARTITIONS:
        raise DataFileError(f"unknown label split {name!r}; known: {', '.join(sorted(PARTITIONS))}")
    return PARTITIONS[name]


def flickr_semisup_parts(mirror: str | os.PathLike | None = None) -> dict[str, tuple[str, ...]]:
    """{val, labelled} of the verified flickr_sup_train list."""
    from .training import load_training_set

    ts = load_training_set("flickr-sup-train", mirror=mirror)
    return FLICKR_SEMISUP.split(ts.ids, where=ts.spec.list_file.upstream.path)


def vggss_semisup_parts(mirror: str | os.PathLike | None = None) -> dict[str, tuple[str, ...]]:
    """{test, val, labelled, unused} of the verified VGG-SS test list."""
    from .lists import read_id_list
    from .spec import get_spec
    from .upstream import resolve

    path = resolve(get_spec("vggss").files["vggss_test"], mirror)
    return VGGSS_SEMISUP250.split(read_id_list(path, "vggsound"), where=path)
