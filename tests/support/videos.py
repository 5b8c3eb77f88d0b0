"""Make small test videos with ffmpeg: good ones, broken ones, stereo ones."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def pattern_video(path: Path, width: int = 256, height: int = 128, seconds: float = 1.0, fps: int = 10,
                  faststart: bool = False) -> Path:
    """A moving test pattern (not a meaningful scene; for I/O tests)."""
    args = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}", "-t", str(seconds),
            "-c:v", "libx264", "-pix_fmt", "yuv420p"]
    if faststart:
        args += ["-movflags", "+faststart"]
    ffmpeg(*args, str(path))
    return path


def truncate(src: Path, dst: Path, share: float = 0.6) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * share)])
    return dst


def stereo_top_bottom(path: Path, eye_width: int = 256, seconds: float = 1.0, fps: int = 10) -> Path:
    """A 1:1 top-bottom stereo mp4 with Spherical Video V2 metadata (st3d + sv3d boxes).

    The top eye shows a test pattern, the bottom eye is solid red, so a test can tell which
    eye the pipeline kept.
    """
    raw = path.with_suffix(".raw.mp4")
    h = eye_width // 2
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={eye_width}x{h}:rate={fps}", "-f", "lavfi",
           "-i", f"color=c=red:size={eye_width}x{h}:rate={fps}", "-filter_complex", "[0:v][1:v]vstack=inputs=2",
           "-t", str(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p", str(raw))
    inject_spherical(raw, path, stereo_mode=1)
    raw.unlink()
    return path


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full(kind: bytes, payload: bytes) -> bytes:
    return _box(kind, b"\x00\x00\x00\x00" + payload)


def inject_spherical(src: Path, dst: Path, stereo_mode: int) -> None:
    """Insert st3d (stereo mode) and sv3d/equi (equirectangular) into the video sample entry.

    Requires moov after mdat (ffmpeg's default without +faststart), so no chunk offset moves.
    """
    data = bytearray(src.read_bytes())
    extra = _full(b"st3d", bytes([stereo_mode])) + _box(
        b"sv3d",
        _full(b"svhd", b"tests\x00")
        + _box(b"proj", _full(b"prhd", struct.pack(">iii", 0, 0, 0)) + _full(b"equi", struct.pack(">IIII", 0, 0, 0, 0))),
    )

    def children(start: int, end: int):
        i = start
        while i < end:
            size, kind = struct.unpack(">I4s", data[i:i + 8])
            yield i, size, kind
            i += size

    top = {kind: (i, size) for i, size, kind in children(0, len(data))}
    if top[b"moov"][0] < top[b"mdat"][0]:
        raise ValueError("moov precedes mdat (faststart); chunk offsets would move")
    path = []  # (offset) of every box whose size grows
    i, size = top[b"moov"]
    path.append(i)

    def find(start: int, end: int, kind: bytes) -> list[tuple[int, int]]:
        return [(j, s) for j, s, k in children(start, end) if k == kind]

    for trak, tsize in find(i + 8, i + size, b"trak"):
        mdia, msize = find(trak + 8, trak + tsize, b"mdia")[0]
        hdlr, _ = find(mdia + 8, mdia + msize, b"hdlr")[0]
        if bytes(data[hdlr + 16:hdlr + 20]) != b"vide":
            continue
        minf, nsize = find(mdia + 8, mdia + msize, b"minf")[0]
        stbl, bsize = find(minf + 8, minf + nsize, b"stbl")[0]
        stsd, dsize = find(stbl + 8, stbl + bsize, b"stsd")[0]
        entry = stsd + 16  # FullBox header (12) + entry_count (4)
        esize = struct.unpack(">I", data[entry:entry + 4])[0]
        path += [trak, mdia, minf, stbl, stsd, entry]
        insert_at = entry + esize
        break
    else:
        raise ValueError("no video track")
    for off in path:
        old = struct.unpack(">I", data[off:off + 4])[0]
        data[off:off + 4] = struct.pack(">I", old + len(extra))
    data[insert_at:insert_at] = extra
    dst.write_bytes(bytes(data))
