"""Flickr-SoundNet media from the user's archive (bring your own; data spec §1.2, §2, §3).

The archive is a directory or a tar(.gz) holding `frames/<id>.jpg`, `audio/<id>.wav|mp3` and, for the test set,
`Annotations/<id>.xml` (any leading directories), and/or videos `<id>.mp4` (any directory; training media).
Per sample:

* frame: the archive's JPEG, stored byte for byte (another image format is re-encoded: Pillow, quality 95); an id
  without `frames/<id>.*` but with `<id>.mp4` takes the frame at the media midpoint (spec §3, Flickr training):
  the first frame at >= duration / 2, the duration read from the `ffmpeg -i` header (no ffprobe);
* audio: `audio/<id>.*` is decoded once by ffmpeg to 16 kHz mono s16 (the §4 swr path), then the `window` seconds
  (10, or 3 for training sets) centred on the midpoint of the decoded samples (all of it if shorter), encoded to
  FLAC by `ffmpeg.encode_flac`; an id with only `<id>.mp4` has its audio cut with its frame by one `cut.cut_clip`
  with the chosen cutter (`--cutter`: PyAV in-process or an ffmpeg process): the `window` seconds centred on the
  media midpoint (all of it if shorter). The recorded `audio.window` is clip-relative, the "clip" being the 10 s
  centred on the media midpoint (so the protocol windows, centred on clip time 5.0 s, are centred on the
  midpoint); `audio.media_window` gives the same span in media seconds;
* boxes: `Annotations/<id>.xml` (or `--flickr-annotations DIR/<id>.xml`) → XML integers / 256 with `box_group`.
  `flickr-sup-train` needs them for every id: its `train` split is the labelled set L of the semi-supervised
  methods (samples marked `"labelled": true`) and its `val` split the 500 held-out ids (baselines spec §3.7).

An id whose frame, audio or (where boxes are needed) XML is absent is reported missing, never substituted: the
engine records a `CutError` with reason `missing` as `unavailable`; `manifest.json` lists such ids under `missing`. A malformed XML fails the whole prepare (spec §1.2).

Tar archives are streamed once: the members of the planned ids are extracted into a staging directory (reused
while the archive's size and mtime are unchanged) and the archive's sha256 is computed on the way.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import DataFileError
from ..files import canonical_json, sha256_bytes, sha256_file, write_json_atomic
from .cut import SAMPLE_RATE, CutError, CutResult, cut_clip, run_cut
from .ffmpeg import BASE_ARGS, FfmpegError, encode_flac
from .plan import PlanRow
from .shards import HashingReader, SampleBlobs

__all__ = [
    "CentredAudio", "FlickrArchive", "FlickrBlobs", "MidpointCut", "cut_centred_audio", "cut_midpoint", "flickr_boxes",
    "xml_digest",
]  # fmt: skip

NOMINAL_CLIP = 10.0
_MEMBER = re.compile(r"(?:^|/)(frames|audio|Annotations|annotations)/([0-9]{9,11})\.([A-Za-z0-9]+)$")
_VIDEO = re.compile(r"(?:^|/)([0-9]{9,11})\.(mp4)$", re.IGNORECASE)
#: kind -> accepted extensions, preferred first
_EXTENSIONS = {"frame": ("jpg", "jpeg", "png"), "audio": ("wav", "mp3"), "xml": ("xml",), "video": ("mp4",)}
_DIRS = {"frames": "frame", "audio": "audio", "annotations": "xml"}
#: what an absent kind is reported as
_EXPECTED = {"frame": "frames/{}.jpg (or {}.mp4)", "audio": "audio/{}.wav|mp3 (or {}.mp4)",
             "xml": "Annotations/{}.xml", "video": "{}.mp4"}  # fmt: skip
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_STAGING_VERSION = 2  # 2: videos are staged too


def _member_kind(name: str) -> tuple[str, str, str] | None:
    """(id, kind, ext) of an archive path such as `x/frames/123456789.jpg` or `x/123456789.mp4`, or None."""
    name = name.replace("\\", "/")
    match = _MEMBER.search(name)
    if match:
        kind, ext = _DIRS[match.group(1).lower()], match.group(3).lower()
        if ext in _EXTENSIONS[kind]:
            return (match.group(2), kind, ext)
    video = _VIDEO.search(name)
    return (video.group(1), "video", video.group(2).lower()) if video else None


def _pick(found: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """id -> kind -> path from `"<id>\\t<kind>\\t<ext>" -> path`, taking the preferred extension of each kind."""
    nested: dict[str, dict[str, dict[str, str]]] = {}
    for key, path in found.items():
        fid, kind, ext = key.split("\t")
        nested.setdefault(fid, {}).setdefault(kind, {})[ext] = path
    return {
        fid: {kind: next(exts[e] for e in _EXTENSIONS[kind] if e in exts) for kind, exts in kinds.items()}
        for fid, kinds in nested.items()
    }


# -------------------------------------------------------------------------------------------------- archive


class FlickrArchive:
    """The user's Flickr-SoundNet archive: a directory (read in place) or a tar(.gz) (staged).

    `facts` (name -> str, recorded in every manifest): for a tar its sha256 and size; for a directory the sha256
    of its listing (`<relative path>\\t<size>` lines of the frames/audio/Annotations files) and the file count.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser().resolve()
        if self.path.is_dir():
            self.kind = "directory"
        elif self.path.is_file() and self.path.name.lower().endswith(_ARCHIVE_SUFFIXES):
            self.kind = "tar"
        elif self.path.exists():
            raise DataFileError(f"{self.path}: the Flickr archive must be a directory or a .tar.gz/.tgz/.tar file")
        else:
            raise DataFileError(f"{self.path}: no such Flickr archive")
        self.facts: dict[str, str] = {}

    def media(self, ids: Iterable[str], staging_root: str | os.PathLike) -> dict[str, dict[str, str]]:
        """id -> {frame, audio, xml} -> local path, for the ids found (missing kinds are absent)."""
        wanted = set(ids)
        if self.kind == "directory":
            return self._walk(wanted)
        return self._stage(wanted, Path(staging_root) / sha256_bytes(str(self.path).encode())[:16])

    def _walk(self, wanted: set[str]) -> dict[str, dict[str, str]]:
        found, listing = {}, []
        for root, dirs, files in os.walk(self.path):
            dirs.sort()
            for name in sorted(files):
                full = Path(root) / name
                rel = full.relative_to(self.path).as_posix()
                parsed = _member_kind(rel)
                if parsed is None:
                    continue
                listing.append(f"{rel}\t{full.stat().st_size}\n")
                if parsed[0] in wanted:
                    found["\t".join(parsed)] = str(full)
        self.facts = {
            "flickr_archive.listing_sha256": sha256_bytes("".join(sorted(listing)).encode("utf-8")),
            "flickr_archive.files": str(len(listing)),
        }
        return _pick(found)

    def _stage(self, wanted: set[str], staging: Path) -> dict[str, dict[str, str]]:
        stat = self.path.stat()
        marker = staging / "index.json"
        previous = _read_json(marker)
        if (previous.get("version") == _STAGING_VERSION and previous.get("size") == stat.st_size
                and previous.get("mtime_ns") == stat.st_mtime_ns and wanted <= set(previous.get("wanted", ()))):
            index = previous
        else:
            if previous.get("size") == stat.st_size and previous.get("mtime_ns") == stat.st_mtime_ns:
                wanted |= set(previous.get("wanted", ()))
            index = self._extract(wanted, staging, stat)
        self.facts = {"flickr_archive.sha256": index["sha256"], "flickr_archive.bytes": str(index["size"])}
        members = {k: str(staging / rel) for k, rel in index["members"].items() if k.split("\t")[0] in wanted}
        return _pick(members)

    def _extract(self, wanted: set[str], staging: Path, stat: os.stat_result) -> dict:
        members: dict[str, str] = {}
        (staging / "media").mkdir(parents=True, exist_ok=True)
        with open(self.path, "rb") as raw:
            reader = HashingReader(raw)
            try:
                with tarfile.open(fileobj=reader, mode="r|*") as tar:  # type: ignore[call-overload]
                    for info in tar:
                        parsed = _member_kind(info.name)
                        if parsed is None or not info.isfile() or parsed[0] not in wanted:
                            continue
                        rel = f"media/{parsed[1]}-{parsed[0]}.{parsed[2]}"
                        source = tar.extractfile(info)
                        assert source is not None
                        tmp = staging / f".{threading.get_ident()}.tmp"
                        with open(tmp, "wb") as out:
                            for block in iter(lambda: source.read(1 << 20), b""):
                                out.write(block)
                        os.replace(tmp, staging / rel)
                        members["\t".join(parsed)] = rel
                while reader.read(1 << 20):
                    pass
            except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
                raise DataFileError(f"{self.path}: unreadable Flickr archive: {type(exc).__name__}: {exc}") from exc
        index = {"version": _STAGING_VERSION, "archive": str(self.path), "size": stat.st_size,
                 "mtime_ns": stat.st_mtime_ns, "sha256": reader.digest.hexdigest(), "wanted": sorted(wanted),
                 "members": members}  # fmt: skip
        write_json_atomic(staging / "index.json", index, indent=None)
        return index


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def flickr_boxes(xml_path: str | os.PathLike) -> tuple[list[list[float]], list[int]]:
    """(boxes normalised as XML integers / 256, box_group of each box) of one Senocak XML file."""
    from ..benchmarks.gt import FLICKR_FRAME, read_flickr_xml

    boxes, groups = [], []
    for group, group_boxes in read_flickr_xml(xml_path):
        for box in group_boxes:
            boxes.append([v / FLICKR_FRAME for v in box])
            groups.append(group)
    return boxes, groups


def xml_digest(xml_paths: Mapping[str, str]) -> str:
    """sha256 of `<id>\\t<sha256 of its XML>` lines, sorted by id: the checksum of the XML set used."""
    return sha256_bytes("".join(f"{i}\t{sha256_file(p)}\n" for i, p in sorted(xml_paths.items())).encode("ascii"))


# ------------------------------------------------------------------------------------------------------ cut


@dataclass(frozen=True)
class CentredAudio:
    """The stored audio of a Flickr clip and where it lies."""

    flac: bytes = field(repr=False)
    samples: int
    window: tuple[float, float]  # clip-relative (clip = the 10 s centred on the media midpoint)
    media_window: tuple[float, float]  # seconds of the decoded media
    media_samples: int


def cut_centred_audio(path: str | os.PathLike, *, window: float = NOMINAL_CLIP, exe: str,
                      timeout: float = 60.0) -> CentredAudio:  # fmt: skip
    """Decode `path` to 16 kHz mono s16 and keep the `window` s centred on its midpoint; raise CutError."""
    argv = [exe, *BASE_ARGS, "-threads", "1", "-i", str(path), "-map", "0:a:0", "-vn", "-ac", "1",
            "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "s16le", "-threads", "1", "pipe:1"]  # fmt: skip
    run, _ = run_cut(argv, path, timeout=timeout, video=False)
    pcm = np.frombuffer(run.stdout[: len(run.stdout) // 2 * 2], dtype="<i2")
    n = int(pcm.size)
    if n == 0:
        raise CutError("no_audio_samples", f"{Path(path).name} decodes to no audio samples")
    keep = min(n, int(round(window * SAMPLE_RATE)))
    start = (n - keep) // 2
    origin = n // 2 - int(round(NOMINAL_CLIP / 2 * SAMPLE_RATE))  # clip start, in media samples
    try:
        flac = encode_flac(np.ascontiguousarray(pcm[start : start + keep]).astype(np.int16), SAMPLE_RATE, exe,
                           timeout=timeout)  # fmt: skip
    except FfmpegError as exc:
        raise CutError("ffmpeg_error", str(exc)) from None
    return CentredAudio(
        flac=flac, samples=keep,
        window=((start - origin) / SAMPLE_RATE, (start - origin + keep) / SAMPLE_RATE),
        media_window=(start / SAMPLE_RATE, (start + keep) / SAMPLE_RATE), media_samples=n,
    )  # fmt: skip


@dataclass(frozen=True)
class MidpointCut:
    """The Flickr training cut of a video: the frame at the media midpoint and the audio centred on it."""

    jpg: bytes = field(repr=False)
    width: int
    height: int
    frame_time: float  # media seconds: duration / 2
    duration: float  # of the container (`ffmpeg -i` header)
    audio: CentredAudio


def _window(value: float) -> float:
    """A window bound in seconds, rounded to the microsecond (undoes float noise such as 3.4999999999999996)."""
    return round(value, 6) + 0.0


def cut_midpoint(path: str | os.PathLike, *, window: float = NOMINAL_CLIP, exe: str, timeout: float = 60.0,
                 tmp_dir: str | os.PathLike | None = None, cutter: str = "pyav") -> MidpointCut:  # fmt: skip
    """Cut a video at its media midpoint (spec §3, Flickr training); raise CutError.

    The duration comes from the `ffmpeg -i` header (no ffprobe); one `cut.cut_clip` run with `cutter` (a resolved
    name, `pyav` | `ffmpeg`) then takes the first frame at >= duration / 2 and the `window` s of audio centred on
    it (all of it if the media is shorter).
    """
    probe = [exe, *BASE_ARGS, "-i", str(path)]
    _, info = run_cut(probe, path, timeout=timeout, check_exit=False)  # `ffmpeg -i` alone always exits non-zero
    duration = info["duration"]
    if not duration or duration <= 0:
        raise CutError("no_duration", f"{Path(path).name}: no duration in the container header")
    mid = duration / 2.0
    cut = cut_clip(path, frame_time=mid, audio_window=window, exe=exe, timeout=timeout, tmp_dir=tmp_dir,
                   cutter=cutter)  # fmt: skip
    origin = mid - NOMINAL_CLIP / 2.0  # clip start, in media seconds
    start, length = cut.audio_window[0], cut.samples / SAMPLE_RATE
    audio = CentredAudio(
        flac=cut.flac, samples=cut.samples, window=(_window(start - origin), _window(start - origin + length)),
        media_window=(_window(start), _window(start + length)), media_samples=int(round(duration * SAMPLE_RATE)),
    )  # fmt: skip
    return MidpointCut(jpg=cut.jpg, width=cut.width, height=cut.height, frame_time=mid, duration=duration, audio=audio)


def _frame(path: str) -> tuple[bytes, int, int, str | None]:
    """(JPEG bytes, width, height, converted-from format or None) of an archive frame."""
    from PIL import Image

    data = Path(path).read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if img.format == "JPEG":
                return data, width, height, None
            buf = io.BytesIO()
            img.convert("RGB").save(buf, format="JPEG", quality=95)
            return buf.getvalue(), width, height, str(img.format)
    except Exception as exc:  # Pillow raises many types for bad images
        raise CutError("bad_frame", f"{Path(path).name} is not a readable image: {exc}") from None


# ------------------------------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class FlickrBlobs:
    """`make_blobs_batch` of the Flickr producer: rows -> SampleBlobs, or CutError for a row that fails.

    `media` maps id -> {frame, audio, xml, video} paths; `xml` is `required` (boxes; an id without XML is missing),
    or `none` (training media without boxes; a row marked `"labelled": true` still needs its XML, so a labelled
    sample always carries its boxes); `xml_dir` overrides the archive's XML. An id's `frames/` and `audio/`
    files are used where present, else its video (`cut_midpoint`). Cuts are cached in `cut_dir` (`<id>.flac` +
    `<id>.json`; a video's as `<id>.mid.jpg|flac|json`), so a negative reuses the cut of its audio clip; the
    caller keys `cut_dir` by the cut facts and the cutter. `timeout` bounds each cut (seconds); `cutter` (a
    resolved name, `pyav` | `ffmpeg`) cuts the videos, while `audio/` files are decoded and encoded by `exe`.
    """

    media: Mapping[str, Mapping[str, str]] = field(repr=False)
    exe: str
    audio_window: float = NOMINAL_CLIP
    xml: str = "required"
    cut_dir: str | None = None
    archive: str = ""
    timeout: float = 60.0
    cutter: str = "pyav"

    def __call__(self, rows: Sequence[PlanRow]) -> list[SampleBlobs | CutError]:
        out: list[SampleBlobs | CutError] = []
        for row in rows:
            try:
                out.append(self._one(row))
            except CutError as exc:
                out.append(exc)
        return out

    def _path(self, clip_id: str, kind: str) -> str:
        """The archive file of one kind; a frame or audio file may be stood in for by the id's video."""
        entry = self.media.get(clip_id, {})
        path = entry.get(kind) or (entry.get("video") if kind in ("frame", "audio") else None)
        if path is None:
            expected = _EXPECTED[kind].format(clip_id, clip_id)
            raise CutError("missing", f"{expected} is not in {self.archive}")
        return path

    def _one(self, row: PlanRow) -> SampleBlobs:
        frame_path = self._path(row.video_id, "frame")
        needs_xml = self.xml == "required" or row.extra.get("labelled") is True  # a labelled sample needs its boxes
        xml_path = self._path(row.video_id, "xml") if needs_xml else None
        audio_path = self._path(row.audio_id, "audio")
        if frame_path == self.media[row.video_id].get("video"):
            cut = self._midpoint(row.video_id, frame_path)
            jpg, width, height, frame_time = cut.jpg, cut.width, cut.height, NOMINAL_CLIP / 2.0
            frame_facts = {"origin": "media midpoint", "media_t": cut.frame_time}
        else:
            jpg, width, height, converted = _frame(frame_path)
            frame_time = None
            frame_facts = {"origin": "archive" if converted is None else f"archive ({converted}, re-encoded)"}
        if audio_path == self.media[row.audio_id].get("video"):
            audio = self._midpoint(row.audio_id, audio_path).audio
        else:
            audio = self._audio(row.audio_id, audio_path)
        boxes, groups = flickr_boxes(xml_path) if xml_path else ([], [])
        if not row.negative:
            row = replace(row, boxes=tuple(tuple(b) for b in boxes))
        video_cut = CutResult(
            jpg=jpg, flac=b"", width=width, height=height, samples=0, sample_rate=SAMPLE_RATE,
            frame_time=frame_time, audio_window=(0.0, 0.0), clip_duration=None, jpg_sha256=sha256_bytes(jpg),
            flac_sha256="",
        )  # type: ignore[arg-type]  # fmt: skip
        audio_cut = CutResult(
            jpg=b"", flac=audio.flac, width=0, height=0, samples=audio.samples, sample_rate=SAMPLE_RATE,
            frame_time=None, audio_window=audio.window, clip_duration=audio.media_samples / SAMPLE_RATE,
            jpg_sha256="", flac_sha256=sha256_bytes(audio.flac),
        )  # type: ignore[arg-type]  # fmt: skip
        from .prepare import sample_meta

        meta = sample_meta(row, video_cut, audio_cut)
        meta["source"] = {"kind": "flickr", "ytid": None, "start": None}
        meta["frame"].update(frame_facts)
        meta["audio"].update(media_window=list(audio.media_window), media_duration=audio.media_samples / SAMPLE_RATE)
        meta["clip_duration"] = audio.media_samples / SAMPLE_RATE
        has_boxes = xml_path is not None
        meta["gt_rule"] = "flickr" if has_boxes else None
        if row.negative:
            meta.update(boxes=[], box_group=None, gt_empty=None, frame_boxes=boxes)
        else:
            meta.update(box_group=groups if has_boxes else None, gt_empty=(not boxes) if has_boxes else None)
        return SampleBlobs(key=row.key, jpg=jpg, flac=audio.flac, meta=meta)

    def _audio(self, clip_id: str, path: str) -> CentredAudio:
        cached = self._cache_get(clip_id, ("flac",))
        if cached is not None:
            facts, blobs = cached
            return CentredAudio(blobs["flac"], facts["samples"], tuple(facts["window"]), tuple(facts["media_window"]),
                                facts["media_samples"])  # fmt: skip
        audio = cut_centred_audio(path, window=self.audio_window, exe=self.exe, timeout=self.timeout)
        self._cache_put(clip_id, _audio_facts(audio), {"flac": audio.flac})
        return audio

    def _midpoint(self, clip_id: str, path: str) -> MidpointCut:
        name = f"{clip_id}.mid"
        cached = self._cache_get(name, ("jpg", "flac"))
        if cached is not None:
            facts, blobs = cached
            audio = CentredAudio(blobs["flac"], facts["samples"], tuple(facts["window"]),
                                 tuple(facts["media_window"]), facts["media_samples"])  # fmt: skip
            return MidpointCut(blobs["jpg"], facts["width"], facts["height"], facts["frame_time"], facts["duration"],
                               audio)  # fmt: skip
        cut = cut_midpoint(path, window=self.audio_window, exe=self.exe, timeout=self.timeout, cutter=self.cutter)
        facts = {**_audio_facts(cut.audio), "width": cut.width, "height": cut.height, "frame_time": cut.frame_time,
                 "duration": cut.duration}  # fmt: skip
        self._cache_put(name, facts, {"jpg": cut.jpg, "flac": cut.audio.flac})
        return cut

    def _cache_get(self, name: str, suffixes: Sequence[str]) -> tuple[dict, dict[str, bytes]] | None:
        """(facts, suffix -> bytes) of a cached cut whose blobs match their recorded sha256, else None."""
        if not self.cut_dir:
            return None
        cache = Path(self.cut_dir)
        facts = _read_json(cache / f"{name}.json")
        blobs = {}
        for suffix in suffixes:
            try:
                blobs[suffix] = (cache / f"{name}.{suffix}").read_bytes()
            except OSError:
                return None
            if not facts or sha256_bytes(blobs[suffix]) != facts.get(f"{suffix}_sha256"):
                return None
        return facts, blobs

    def _cache_put(self, name: str, facts: dict, blobs: Mapping[str, bytes]) -> None:
        """Store blobs, then their facts (with each blob's sha256) last; no fsync: a torn entry is re-cut."""
        if not self.cut_dir:
            return
        cache = Path(self.cut_dir)
        cache.mkdir(parents=True, exist_ok=True)
        facts = {**facts, **{f"{suffix}_sha256": sha256_bytes(data) for suffix, data in blobs.items()}}
        for suffix, data in (*blobs.items(), ("json", canonical_json(facts).encode())):
            tmp = cache / f".{name}.{suffix}.{os.getpid()}.{threading.get_ident()}.tmp"  # threads or processes
            tmp.write_bytes(data)
            os.replace(tmp, cache / f"{name}.{suffix}")


def _audio_facts(audio: CentredAudio) -> dict:
    return {"samples": audio.samples, "window": list(audio.window), "media_window": list(audio.media_window),
            "media_samples": audio.media_samples}  # fmt: skip
