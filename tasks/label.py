"""``label``: every stage in-process on one video (no Airflow), results exported to a folder.

The same stage functions the DAG runs, in order, against a local store (``DIR/.store`` unless
``LEADER360V_STORE`` or ``store`` says otherwise); re-running into the same folder reuses every
stage already committed. The export is written to a temporary folder inside ``DIR`` and moved
into place file by file, ``annotations.json`` last, so an interrupted export never looks done.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tasks import layout
from tasks.config import PipelineConfig
from tasks.errors import QualityGateFailed, UsageError
from tasks.labeling import prompts as prompts_mod
from tasks.stages.ingest import content_id
from tasks.stages.runner import ORDER, execute, output_key
from tasks.storage import ObjectStore, open_store

log = logging.getLogger(__name__)


@dataclass
class LabelResult:
    out_dir: Path
    video_id: str
    run: str
    frames: int
    objects: int
    seconds: float
    stage_seconds: dict[str, float]
    validation_passed: bool
    validation_error: str | None = None

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["out_dir"] = str(self.out_dir)
        return d


def label_video(
    video: str | Path,
    out_dir: str | Path,
    *,
    config: PipelineConfig | None = None,
    prompts_file: str | Path | None = None,
    store: ObjectStore | None = None,
    force: bool = False,
    progress: bool = True,
) -> LabelResult:
    video = Path(video)
    out_dir = Path(out_dir)
    if not video.is_file():
        raise UsageError(f"no such video file: {video}" + (" (it is a folder)" if video.is_dir() else ""))
    config = config or PipelineConfig()
    # Everything that can be checked before the work is (issue 12: a read-only --out, or one
    # that is a file, surfaced only after every stage had run).
    check_output_dir(out_dir)
    data = None
    if prompts_file is not None:
        try:
            data = Path(prompts_file).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read the prompts file {prompts_file}: {exc.strerror or exc}") from None
        prompts, sha = prompts_mod.load_bytes(data, where=str(prompts_file))  # structural checks, early
    store = store or open_store(os.environ.get("LEADER360V_STORE") or out_dir / ".store")
    t0 = time.perf_counter()
    video_id, _ = content_id(video)
    if data is not None:
        prompts_mod.check_video_uid(prompts, video_id, where=str(prompts_file))
    key = f"{layout.RAW}label/{video_id}/{_key_name(video.name)}"
    if not store.exists(key):
        store.put_file(key, video)
    if data is not None:
        store.put_bytes(layout.prompts_key(video_id, sha), data)
        config = config.with_overrides({"prompts": sha})
    times: dict[str, float] = {}
    r = execute("ingest", store=store, config=config, params={"key": key}, force=force)
    times["ingest"] = r.seconds
    validation_error = None
    for stage in ORDER[1:]:
        try:
            r = execute(stage, store=store, config=config, video_id=video_id, force=force,
                        params={"progress": progress})
        except QualityGateFailed as exc:
            validation_error = str(exc)
            break
        times[stage] = round(r.seconds, 3)
        if stage == "decode" and data is not None:
            # the frame count and size are known now: prompts past the end are refused before the
            # proposals, the slow part, not after them in sdr (issue 12: checks before the work)
            prompts_mod.check_against_video(prompts, int(r.stats["frames"]), int(r.stats["width"]),
                                            where=str(prompts_file), video_id=video_id)
    n_objects = _export(store, video_id, config.hash, out_dir)
    frames = json.loads((out_dir / "annotations.json").read_text())["videos"][0]["length"]
    return LabelResult(out_dir, video_id, config.hash, frames, n_objects, round(time.perf_counter() - t0, 3), times,
                       validation_error is None, validation_error)


def check_output_dir(out_dir: Path) -> None:
    """``out_dir`` is, or can be made, a folder this process can write in; UsageError (exit 2)
    otherwise, before any work. Tried for real (a file created and removed), because permission
    bits do not tell: root ignores them, and a read-only mount or a full quota overrides them."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a folder; give a folder (it is created if missing)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=".write-check-", dir=out_dir):
            pass
    except (FileExistsError, NotADirectoryError):   # a parent is a file
        raise UsageError(f"--out {out_dir}: a part of that path is a file, not a folder") from None
    except OSError as exc:
        raise UsageError(f"--out {out_dir} cannot be written ({exc.strerror or exc}); give a folder you can "
                         "write in") from None


def _key_name(name: str) -> str:
    """The file's name as a store key segment: characters a key may not hold (a backslash, control
    characters; tasks.storage.base.check_key) become '_' (issue 12: a backslash in a file name
    crashed `label` with a traceback). The content id, not the name, identifies the video."""
    safe = "".join("_" if c in "\\/" or ord(c) < 32 or c == "\x7f" or 0xD800 <= ord(c) < 0xE000 else c for c in name)
    if len(safe.encode("utf-8")) > 200:   # a key segment holds at most 255 bytes; keep the extension
        suffix = Path(safe).suffix[:16]
        safe = safe.encode("utf-8")[:180].decode("utf-8", "ignore") + suffix
    return "video" if safe in ("", ".", "..") else safe


def _export(store: ObjectStore, video_id: str, run: str, out_dir: Path) -> int:
    qa = store.get_json(layout.manifest_key(video_id, run, "qa"))
    outs = {k: output_key(store, qa, k) for k in qa["outputs"]}
    doc = store.get_json(outs["annotations"])
    n = int(doc["videos"][0]["length"])
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out_dir) as tmp:
        tmp = Path(tmp)
        (tmp / "idmaps").mkdir()
        for i in range(n):
            store.get_file(f"{outs['idmaps']}{i:05d}.png", tmp / "idmaps" / f"{i:05d}.png")
        store.get_file(outs["preview"], tmp / "preview.mp4")
        store.get_file(outs["flags"], tmp / "flags.json")
        review = tmp / "review"
        review.mkdir()
        for info in store.list(outs["review"]):
            store.get_file(info.key, review / info.key.rsplit("/", 1)[-1])
        (tmp / "annotations.json").write_text(json.dumps(doc, ensure_ascii=False))
        # an old annotations.json must not describe the new id maps, even for an instant
        (out_dir / "annotations.json").unlink(missing_ok=True)
        for name in ("idmaps", "review"):
            dest = out_dir / name
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp / name, dest)
        for name in ("preview.mp4", "flags.json", "annotations.json"):  # annotations.json last
            os.replace(tmp / name, out_dir / name)
    return len(doc["annotations"])
