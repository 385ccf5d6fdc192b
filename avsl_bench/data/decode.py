"""In-process cutting with PyAV: the frame and audio of `cut.cut_clip` without an ffmpeg process (spec §3, §4).

The same libav* pipeline as the §4 command line, run through PyAV's bundled FFmpeg libraries:

* frame: seek to the keyframe at or before t, decode forward (frames shown before t that no other frame
  references are not decoded at all), take the first frame with pts >= t, convert it to full-range YUV as
  ffmpeg's auto-inserted scaler does and encode it with the mjpeg encoder at `-q:v 2`, bitexact, SAR 1;
* audio: seek like `-ss` on the input (always, also to 0), decode from there, `atrim` the window in the source's sample domain, let `aformat` (with the
  auto-inserted swr `aresample`) make 16 kHz mono s16, and mux FLAC to memory with bitexact flags, no metadata,
  no padding and the command line's block size.

The command line's demuxer seek also lands past an mp4 edit list's priming packet (the AAC encoder delay)
whenever the default stream has a keyframe at the window start, and ffmpeg (n9) then skips the priming count
(1,024 samples for AAC) of the first packet it decodes after the seek; PyAV's libavformat gives that packet no
skip. The first packet after the seek therefore gets the stream's priming SKIP_SAMPLES side data (read off its
first packet) unless it carries its own, and times go in as the command line's whole microseconds (`-ss 6.3`,
not the float 1.3 + 5.0), rescaled to each stream's time base to the nearest tick as ffmpeg does.

One thread per clip (decoders run with `thread_count=1`). PyAV releases the GIL while decoding, but the
per-packet Python in between holds it, so N threads do not use N cores: `cut.cut_pool` cuts in processes. A file
PyAV cannot cut raises `DecodeError`; `cut.cut_clip` then falls back to ffmpeg.
"""

from __future__ import annotations

import io
import math
from decimal import Decimal
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
#: ffmpeg's FF_QP2LAMBDA: `-q:v 2` is global_quality = 2 * 118 with the qscale flag.
_QP2LAMBDA = 118
JPEG_QSCALE = 2
#: Full-range pixel format the mjpeg encoder gets, by chroma layout of the decoded frame.
_JPEG_PIX_FMT = {"444": "yuvj444p", "422": "yuvj422p"}
#: Demuxers whose cut is byte-identical to the command line's (checked: MP4/MOV with H.264 + AAC at 16 / 44.1 /
#: 48 kHz, with and without an edit list, MP3, Opus, AC-3). Matroska/WebM is not (its seek lands on other audio
#: packets than the command line's and the decoder delay is applied differently), so anything else raises
#: DecodeError and the ffmpeg cutter cuts it.
_SAME_AS_CLI = frozenset({"mov,mp4,m4a,3gp,3g2,mj2"})


class DecodeError(Exception):
    """PyAV could not cut a file (unreadable, a stream missing, nothing at the time asked): the caller falls back."""


class DecodeTimeout(DecodeError):
    """The cut ran past its deadline (checked between packets)."""


@dataclass(frozen=True)
class Decoded:
    """What `cut_pyav` produced: JPEG and FLAC bytes plus the facts `CutResult` records."""

    jpg: bytes
    flac: bytes
    width: int
    height: int
    samples: int
    clip_duration: float | None


def available() -> bool:
    """True when PyAV imports."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def pyav_versions() -> dict[str, str]:
    """PyAV's version and those of the libav* libraries it bundles (recorded as provenance)."""
    import av

    libs = {name: ".".join(map(str, v)) for name, v in sorted(av.library_versions.items())}
    return {"pyav": av.__version__, "ffmpeg": str(getattr(av, "ffmpeg_version_info", "")), **libs}


def cut_pyav(
    src: str | Path,
    *,
    start_offset: float = 0.0,
    frame_time: float = 5.0,
    window: tuple[float, float] = (0.0, 10.0),
    timeout: float | None = None,
) -> Decoded:
    """Cut `src` in-process: JPEG of the first frame at >= start_offset + frame_time, FLAC of `window`.

    Times are seconds from the container's start time. Raises DecodeError (DecodeTimeout past `timeout`; also
    where PyAV is not installed).
    """
    deadline = None if timeout is None else time.perf_counter() + timeout
    name = Path(src).name
    try:
        import av

        with av.open(str(src), metadata_errors="replace") as container:
            if container.format.name not in _SAME_AS_CLI:
                raise DecodeError(f"{name}: {container.format.name} input is cut by ffmpeg")
            if not container.streams.video:
                raise DecodeError(f"{name} has no video stream")
            if not container.streams.audio:
                raise DecodeError(f"{name} has no audio stream")
            origin = int(container.start_time or 0)  # microseconds, as `-ss` adds it to the seek point
            flac = _audio(container, origin + _us(start_offset + window[0]), _us(window[1] - window[0]),
                          deadline, name)  # fmt: skip
            frame = _frame(container, origin + _us(start_offset + frame_time), deadline, name)
            jpg = _encode_jpeg(frame)
            duration = _printed_duration(container.duration)
    except DecodeError:
        raise
    except Exception as exc:  # whatever libav* or PyAV raised: the ffmpeg cutter gets the file instead
        raise DecodeError(f"{name}: {type(exc).__name__}: {exc}") from None
    return Decoded(jpg=jpg, flac=flac[0], width=frame.width, height=frame.height, samples=flac[1],
                   clip_duration=duration)  # fmt: skip


def _us(seconds: float) -> int:
    """`seconds` in microseconds exactly as the command line gets it: `cut._sec` prints 6 decimals, which
    ffmpeg parses to whole microseconds (so 1.3 + 5.0 is 6300000 us, not the float's 6.30000000000000044 s)."""
    return int(Decimal(f"{seconds:.6f}").scaleb(6))


def _rescale(us: int, time_base: Fraction) -> int:
    """`av_rescale_q(us, AV_TIME_BASE_Q, time_base)`: to the nearest tick, halves away from zero (how ffmpeg
    turns the input's `-ss` offset into a stream's timestamps)."""
    ticks = Fraction(us, 1_000_000) / time_base
    return int(math.copysign(math.floor(abs(ticks) + Fraction(1, 2)), ticks))


def _check(deadline: float | None, name: str) -> None:
    if deadline is not None and time.perf_counter() > deadline:
        raise DecodeTimeout(f"{name}: in-process cut exceeded its time limit")


def _printed_duration(duration_us: int | None) -> float | None:
    """The container duration as `ffmpeg -i` prints it (rounded to 1/100 s), so both cutters record the same."""
    if duration_us is None or duration_us < 0:
        return None
    return ((int(duration_us) + 5000) * 100 // 1_000_000) / 100


# --------------------------------------------------------------------------- frame


def _frame(container, target_us: int, deadline: float | None, name: str):
    """The first decoded frame of video stream 0 whose pts is >= `target_us` microseconds (rescaled like
    the command line's input offset)."""
    stream = container.streams.video[0]
    ctx = stream.codec_context
    ctx.thread_count = 1
    tb = stream.time_base
    target_pts = _rescale(target_us, tb)
    container.seek(target_pts, stream=stream, backward=True, any_frame=False)
    ctx.flush_buffers()
    for packet in container.demux(stream):
        _check(deadline, name)
        # a frame shown before t that no frame references cannot be the one taken: skip decoding it
        early = packet.pts is not None and packet.pts < target_pts
        ctx.skip_frame = "NONREF" if early else "DEFAULT"
        for frame in ctx.decode(packet):
            pts = frame.pts if frame.pts is not None else frame.dts
            if pts is None:
                raise DecodeError(f"{name}: decoded frame without a timestamp")
            if pts >= target_pts:
                return frame
    raise DecodeError(f"{name}: no frame at >= {target_us / 1e6:g} s")


def _encode_jpeg(frame) -> bytes:
    """mjpeg at -q:v 2, bitexact, SAR 1, from the frame converted to full-range YUV (as ffmpeg's scaler does)."""
    import av

    fmt = next((f for key, f in _JPEG_PIX_FMT.items() if key in frame.format.name), "yuvj420p")
    img = frame.reformat(format=fmt)
    img.pts = 0
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height, enc.pix_fmt = img.width, img.height, fmt
    enc.time_base = Fraction(1, 25)
    enc.sample_aspect_ratio = Fraction(1, 1)
    enc.thread_count = 1
    enc.flags |= av.codec.context.Flags.qscale | av.codec.context.Flags.bitexact
    enc.global_quality = JPEG_QSCALE * _QP2LAMBDA
    enc.open()
    return b"".join(bytes(p) for p in [*enc.encode(img), *enc.encode(None)])


# --------------------------------------------------------------------------- audio


def _audio(container, start_us: int, length_us: int, deadline: float | None, name: str) -> tuple[bytes, int]:
    """(FLAC bytes, sample count) of audio stream 0 over [start, start + length) microseconds, 16 kHz mono s16."""
    import av

    stream = container.streams.audio[0]
    ctx = stream.codec_context
    ctx.thread_count = 1
    tb = stream.time_base
    priming = _priming(container, stream)
    container.seek(start_us, backward=True)  # default stream, like `-ss` on the input
    ctx.flush_buffers()
    shift = _rescale(start_us, tb)  # source timestamps -> window time (pts 0 = window start)
    end_pts = shift + math.ceil(Fraction(length_us, 1_000_000) / tb)
    length = Fraction(length_us, 1_000_000)
    frames = []
    first = True
    for packet in container.demux(stream):
        _check(deadline, name)
        if first and packet.size:
            first = False
            if priming is not None and not packet.has_sidedata("skip_samples"):
                packet.set_sidedata(priming)
        frames += ctx.decode(packet)
        if packet.pts is not None and packet.pts >= end_pts:
            frames += ctx.decode(None)  # what the decoder still holds
            break
    if not frames:
        raise DecodeError(f"{name}: no audio samples in the window")
    if stream.duration is not None and stream.duration > 0:  # drop the codec's end padding past the stream's end
        length = min(length, (int(stream.start_time or 0) + int(stream.duration) - shift) * tb)
    graph = _audio_graph(frames[0], tb, float(length))
    for frame in frames:
        if frame.pts is None:
            raise DecodeError(f"{name}: decoded audio without a timestamp")
        frame.pts -= shift
        graph.push(frame)
    graph.push(None)
    chunks = []
    while True:
        try:
            chunks.append(graph.pull().to_ndarray().reshape(-1))
        except (av.BlockingIOError, av.EOFError):
            break
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    if pcm.size == 0:
        raise DecodeError(f"{name}: no audio samples in the window")
    return encode_flac(pcm, SAMPLE_RATE, block_size=chunks[0].size), int(pcm.size)


def _priming(container, stream):
    """The skip-samples side data of the audio stream's first packet (its edit list's priming), or None."""
    for packet in container.demux(stream):
        if packet.size:
            return packet.get_sidedata("skip_samples") if packet.has_sidedata("skip_samples") else None
    return None


def encode_flac(pcm: np.ndarray, sample_rate: int, block_size: int | None = None) -> bytes:
    """Mono int16 PCM as 16-bit FLAC by libavcodec's encoder in-process: bitexact, no tags, no padding.

    The options of the §4 command line (`-c:a flac -sample_fmt s16 -metadata_header_padding 0` + bitexact).
    The command line's encoder takes the size of the first frame it is fed as its block size: 1,024 samples for
    raw PCM input (`ffmpeg.encode_flac`), the first resampled frame in a cut. `block_size` (default
    min(1024, len(pcm))) does the same, so one libavcodec build gives the bytes of the command line.

    >>> import soundfile, io
    >>> pcm = np.arange(-800, 800, dtype=np.int16)
    >>> bool((soundfile.read(io.BytesIO(encode_flac(pcm, 16000)), dtype="int16")[0] == pcm).all())
    True
    """
    import av

    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1 or pcm.size == 0:
        got = f"{type(pcm).__name__} {getattr(pcm, 'dtype', '')} ndim={getattr(pcm, 'ndim', '?')}"
        raise ValueError(f"pcm must be a non-empty 1-D int16 numpy array, got {got}")
    block = max(16, min(int(block_size or 1024), int(pcm.size), 65535))  # FLAC block sizes: 16 .. 65535
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm).reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = int(sample_rate)
    out = io.BytesIO()
    options = {"fflags": "+bitexact", "metadata_header_padding": "0"}
    with av.open(out, "w", format="flac", container_options=options) as muxer:
        stream = muxer.add_stream("flac", rate=int(sample_rate), layout="mono", format="s16",
                                  options={"frame_size": str(block)})  # fmt: skip
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        stream.codec_context.thread_count = 1
        muxer.mux(stream.encode(frame))
        muxer.mux(stream.encode(None))
    return out.getvalue()


def _audio_graph(frame, time_base: Fraction, length: float):
    """abuffer -> atrim (window) -> aformat (16 kHz mono s16; swr aresample auto-inserted) -> abuffersink."""
    import av.filter

    graph = av.filter.Graph()
    src = graph.add_abuffer(format=frame.format.name, sample_rate=frame.sample_rate, layout=frame.layout.name,
                            time_base=time_base)  # fmt: skip
    trim = graph.add("atrim", start="0", duration=repr(length))
    fmt = graph.add("aformat", sample_fmts="s16", sample_rates=str(SAMPLE_RATE), channel_layouts="mono")
    sink = graph.add("abuffersink")
    src.link_to(trim)
    trim.link_to(fmt)
    fmt.link_to(sink)
    graph.configure()
    return graph
