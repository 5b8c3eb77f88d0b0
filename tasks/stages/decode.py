"""decode: frames at the configured fps and width (one eye for stereo, resized to exact 2:1).

Before decoding, the raw object's bytes are hashed and compared with the sha256 its
``source.json`` recorded at ingest (issue 12): a different file uploaded under the same key is a
new video, never new frames under the old id (:class:`~tasks.errors.SourceChanged`). The hash is
taken of the very file ffmpeg then reads (the store's file, or the local copy of an S3 object).

Frames are resampled by timestamps when ``video.fps`` is set, passed through one by one when it
is not (tasks/video/frames.py); ``decoder`` in the frames manifest marks frames made that way, so
frames decoded before (with duplicates on variable-frame-rate input) are decoded again.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging

from tqdm import tqdm

from tasks import layout
from tasks.config import PipelineConfig
from tasks.errors import InputRejected, SourceChanged
from tasks.stages.contract import StageInputs, StageOutput, StageWriter
from tasks.storage import ObjectStore
from tasks.storage.lease import LEASES, held_lease
from tasks.video.frames import iter_frames
from tasks.video.framestore import encode_jpeg
from tasks.video.limits import check_limits, expected_frames
from tasks.video.probe import VideoProbe

log = logging.getLogger(__name__)

# A stream that decodes to fewer than this share of its promised frames is corrupt mid-file.
_MIN_DECODED_SHARE = 0.9
# 2: display rotation applied and no duplicated frames on VFR input (issue 12); frames manifests
# without it (or older) are decoded again.
DECODER_VERSION = 2


def run(inputs: StageInputs, config: PipelineConfig, store: ObjectStore, writer: StageWriter) -> StageOutput:
    source = store.get_json(inputs.output_key(store, "ingest", "source"))
    probe = VideoProbe(**source["probe"])
    # again here: a run ingested before issue 12 never had its configuration checked, and a
    # decode that yields nothing because of video.fps must not quarantine the content
    check_limits(probe, config)
    width = config.processing_width(probe.eye_width)
    fps = config.video.fps or probe.fps
    prefix = layout.frames_prefix(inputs.video_id, fps, width)
    fkey = prefix + layout.MANIFEST
    fm = _reusable(store, fkey, source)
    if fm is not None:
        log.info("reusing %d decoded frames at %s", fm["count"], prefix)
    else:
        # Frames are shared by every run with this fps and width, so the run's stage lease does
        # not cover them: two runs of different configurations must not decode into one prefix
        # at once (issue 12). The second waits, then reuses what the first committed.
        with held_lease(store, f"{LEASES}{inputs.video_id}/frames/{prefix.rstrip('/').rsplit('/', 1)[-1]}.json",
                        what=f"the frames {prefix}") as lease:
            fm = _reusable(store, fkey, source)
            if fm is None:
                fm = _decode(store, source, probe, prefix, width, fps if config.video.fps else None, config,
                             inputs.params, lease)
    return StageOutput(
        outputs={"frames": prefix, "frames_manifest": fkey},
        stats={"frames": fm["count"], "width": fm["width"], "height": fm["height"], "fps": fm["fps"]},
    )


def _reusable(store, fkey: str, source: dict) -> dict | None:
    """The committed frames manifest if its frames were decoded from this content by this decoder."""
    fm = store.get_json(fkey) if store.exists(fkey) else None
    if fm is not None and fm.get("decoder", 1) >= DECODER_VERSION and fm.get("source_sha256") == source["sha256"]:
        return fm
    return None


def _decode(store, source, probe, prefix, width, fps, config, params, lease) -> dict:
    store.delete_prefix(prefix)  # leftovers of an interrupted decode
    try:
        return _decode_into(store, source, probe, prefix, width, fps, config, params, lease)
    except InputRejected:
        store.delete_prefix(prefix)  # the frames of rejected content are of no use to anyone
        raise


def _decode_into(store, source, probe, prefix, width, fps, config, params, lease) -> dict:
    expected = expected_frames(probe, fps)
    n = 0
    with store.local_file(source["key"]) as path:
        verify_source(path, source)
        bar = tqdm(total=expected, desc="decode", unit="frame", disable=not params.get("progress", False) or None)
        for frame in iter_frames(path, probe, width, fps):
            store.put_bytes(layout.frame_key(prefix, n), encode_jpeg(frame, config.video.jpeg_quality), content_type="image/jpeg")
            n += 1
            bar.update(1)
        bar.close()
    if n == 0:
        raise InputRejected("no_frames", "ffmpeg decoded no frames from the video stream")
    # resampling by timestamps gives duration x fps +-1 frames: a short clip one frame short is
    # not damaged (2 expected, 1 decoded would otherwise quarantine good content)
    if expected and n + (1 if fps is not None else 0) < _MIN_DECODED_SHARE * expected:
        raise InputRejected(
            "truncated",
            f"only {n} of {expected} frames could be decoded; the stream is damaged — re-upload the file",
            details={"decoded": n, "expected": expected},
        )
    fm = {
        "count": n, "width": width, "height": width // 2, "fps": fps or probe.fps,
        "layout": probe.layout, "source_sha256": source["sha256"], "decoder": DECODER_VERSION,
        "rotation": probe.rotation,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    lease.check()
    store.put_json(prefix + layout.MANIFEST, fm)
    return fm


def verify_source(path, source: dict) -> None:
    """Raise :class:`SourceChanged` unless the file at ``path`` has the recorded sha256."""
    with open(path, "rb") as fh:
        found = hashlib.file_digest(fh, "sha256").hexdigest()
    if found != source["sha256"]:
        raise SourceChanged(source["video_id"], source["key"], source["sha256"], found)
