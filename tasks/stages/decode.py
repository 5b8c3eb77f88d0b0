"""decode: frames at the configured fps and width (one eye for stereo, resized to exact 2:1)."""

from __future__ import annotations

import datetime as _dt
import logging

from tqdm import tqdm

from tasks import layout
from tasks.config import PipelineConfig
from tasks.errors import InputRejected
from tasks.stages.contract import StageInputs, StageOutput, StageWriter
from tasks.storage import ObjectStore
from tasks.video.frames import iter_frames
from tasks.video.framestore import encode_jpeg
from tasks.video.probe import VideoProbe

log = logging.getLogger(__name__)

# A stream that decodes to fewer than this share of its promised frames is corrupt mid-file.
_MIN_DECODED_SHARE = 0.9


def run(inputs: StageInputs, config: PipelineConfig, store: ObjectStore, writer: StageWriter) -> StageOutput:
    source = store.get_json(inputs.output_key(store, "ingest", "source"))
    probe = VideoProbe(**source["probe"])
    width = config.processing_width(probe.eye_width)
    fps = config.video.fps or probe.fps
    prefix = layout.frames_prefix(inputs.video_id, fps, width)
    fkey = prefix + layout.MANIFEST
    if store.exists(fkey):
        fm = store.get_json(fkey)
        log.info("reusing %d decoded frames at %s", fm["count"], prefix)
    else:
        fm = _decode(store, source, probe, prefix, width, fps if config.video.fps else None, config, inputs.params)
    return StageOutput(
        outputs={"frames": prefix, "frames_manifest": fkey},
        stats={"frames": fm["count"], "width": fm["width"], "height": fm["height"], "fps": fm["fps"]},
    )


def _decode(store, source, probe, prefix, width, fps, config, params) -> dict:
    store.delete_prefix(prefix)  # leftovers of an interrupted decode
    expected = probe.n_frames if fps is None else int(round(probe.duration * fps))
    n = 0
    with store.local_file(source["key"]) as path:
        bar = tqdm(total=expected, desc="decode", unit="frame", disable=not params.get("progress", False) or None)
        for frame in iter_frames(path, probe, width, fps):
            store.put_bytes(layout.frame_key(prefix, n), encode_jpeg(frame, config.video.jpeg_quality), content_type="image/jpeg")
            n += 1
            bar.update(1)
        bar.close()
    if n == 0:
        raise InputRejected("no_frames", "ffmpeg decoded no frames from the video stream")
    if expected and n < _MIN_DECODED_SHARE * expected:
        raise InputRejected(
            "truncated",
            f"only {n} of {expected} frames could be decoded; the stream is damaged — re-upload the file",
            details={"decoded": n, "expected": expected},
        )
    fm = {
        "count": n, "width": width, "height": width // 2, "fps": fps or probe.fps,
        "layout": probe.layout, "source_sha256": source["sha256"],
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    store.put_json(prefix + layout.MANIFEST, fm)
    return fm
