"""``review import``: a corrections file becomes a new run, re-checked by QA and the suites (issue 15 §3).

1. the file is read and checked against the video and the run the person corrected
   (:mod:`tasks.review.corrections`); every problem is listed and nothing is stored;
2. under one lease per video (``leases/{video_id}/review/import.json``), so two imports for the
   same video run one after the other, the second building on the first;
3. the correction's files are written (invisible: no manifest yet);
4. the **revised run** is made: its configuration is the original run's plus
   ``review.revision_of`` (the original run) and ``review.corrections`` (every correction applied,
   in order), so its hash includes the corrections. Its upstream stages (ingest .. propagate) are
   the original run's, referenced by their manifests (nothing is recomputed or copied); its
   ``refine`` output is the original run's labels with every correction re-followed forward and
   backward (:mod:`tasks.review.refollow`), corrected frames and tracks marked human; then
   ``qa`` and ``validate`` run on it through the stage runner as for any run;
5. the correction's manifest is written last: only now is the import visible. A failure or an
   interruption before removes the correction's files and the run being made; a killed process
   leaves them uncommitted (never listed, never ready), and the retry -- the same content gives
   the same correction id and so the same configuration -- clears and redoes the same run.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import time
from dataclasses import dataclass

import numpy as np

from tasks import layout
from tasks.backends.flow import build_propagator
from tasks.config import PipelineConfig
from tasks.errors import MissingUpstream
from tasks.formats import idmap as idmap_png
from tasks.labeling.tracks import Track, tracks_from_json, tracks_to_json
from tasks.review import corrections as cmod
from tasks.review.refollow import refollow
from tasks.stages import runner
from tasks.stages.contract import StageOutput, StageWriter
from tasks.storage import ObjectStore
from tasks.storage.lease import held_lease
from tasks.video.framestore import Frames
from tasks.vocabulary import master

log = logging.getLogger(__name__)

#: stages a revised run takes from its original run as they are (their outputs do not depend on corrections)
REFERENCED = ("ingest", "decode", "propose", "verify", "sdr", "propagate")


def import_lease_key(video_id: str) -> str:
    return f"leases/{layout.check_video_id(video_id)}/review/import.json"


@dataclass
class ImportResult:
    correction: str
    video_id: str
    run: str                  # the revised run
    base_run: str             # the run the person corrected
    revision_of: str          # the original (machine-labeled) run
    applies: list[str]
    frames: list[int]
    status: str               # "imported" | "already imported"
    qa_flags: dict
    refollowed: list[dict]

    def to_json(self) -> dict:
        return self.__dict__.copy()


def latest_run_with_qa(store: ObjectStore, video_id: str) -> str:
    best = None
    for rp in store.list_prefixes(layout.video_prefix(video_id) + "runs/"):
        run = rp.rstrip("/").rsplit("/", 1)[-1]
        m = runner.load_manifest(store, video_id, run, "qa")
        if m is not None and (best is None or m["finished"] > best[0]):
            best = (m["finished"], run)
    if best is None:
        raise MissingUpstream(f"video {video_id} has no run with QA output; label it first")
    return best[1]


def _run_state(store, video_id: str, run: str):
    cfg = runner.load_run_config(store, video_id, run)
    refine = runner.load_manifest(store, video_id, run, "refine")
    decode = runner.load_manifest(store, video_id, run, "decode")
    if refine is None or decode is None:
        raise MissingUpstream(f"run {run} of video {video_id} has no committed refine stage; label it first")
    frames = Frames(store, runner.output_key(store, decode, "frames"))
    iprefix = runner.output_key(store, refine, "idmaps")
    tracks = tracks_from_json(store.get_json(runner.output_key(store, refine, "tracks")))
    return cfg, refine, frames, iprefix, tracks


def import_corrections(store: ObjectStore, video_id: str, data: bytes, *, source_name: str = "corrections",
                       run: str | None = None, author: str | None = None, _interrupt=None) -> ImportResult:
    """Read, check, store and apply a corrections file (CVAT XML or release JSON)."""
    layout.check_video_id(video_id)
    with held_lease(store, import_lease_key(video_id), what=f"corrections import of video {video_id}") as lease:
        base_run = run or latest_run_with_qa(store, video_id)
        _, _, frames, iprefix, tracks = _run_state(store, video_id, base_run)
        given = cmod.read_file(data, video_id=video_id, width=frames.width, height=frames.height,
                               length=len(frames), name=source_name)
        if run is None and given.run and given.run != base_run:
            base_run = given.run   # the file names the run it was exported from
            _, _, frames, iprefix, tracks = _run_state(store, video_id, base_run)
        c = cmod.compare(given, video_id=video_id, run=base_run,
                         base_idmap=lambda f: idmap_png.decode_png(store.get_bytes(f"{iprefix}{f:05d}.png")),
                         base_tracks=tracks, name=source_name)
        done = {r["id"]: r for r in cmod.committed(store, video_id)}
        if c.id in done:
            r = done[c.id]
            return ImportResult(c.id, video_id, r["revised_run"], r["run"], _root(store, video_id, r["run"]),
                                r["applies"], r["frames"], "already imported", _flags(store, video_id, r["revised_run"]), [])
        root = _root(store, video_id, base_run)
        previous = [r for r in done.values() if r.get("revised_run") and _root(store, video_id, r["run"]) == root]
        applies = (previous[-1]["applies"] if previous else []) + [c.id]
        target = revised_config(runner.load_run_config(store, video_id, root), root, applies).hash
        fresh = runner.load_manifest(store, video_id, target, "validate") is None
        try:
            cmod.write_payload(store, c, source=data, source_name=source_name, author=author or cmod.who())
            if _interrupt:
                _interrupt("payload")
            new_run, spans = build_revision(store, video_id, root, applies, _interrupt=_interrupt)
            lease.check()
            cmod.commit(store, video_id, c.id, revised_run=new_run, applies=applies)
        except BaseException:
            # an attempt that fails (or is interrupted in this process) takes its files with it; a
            # killed process leaves them uncommitted, and its retry clears and redoes them
            store.delete_prefix(cmod.correction_prefix(video_id, c.id))
            if fresh:
                store.delete_prefix(layout.run_prefix(video_id, target))
            raise
        return ImportResult(c.id, video_id, new_run, base_run, root, applies, sorted(c.frames), "imported",
                            _flags(store, video_id, new_run), spans)


def _root(store, video_id: str, run: str) -> str:
    cfg = runner.load_run_config(store, video_id, run)
    return cfg.review.revision_of or run


def _flags(store, video_id: str, run: str) -> dict:
    m = runner.load_manifest(store, video_id, run, "qa")
    return m["stats"].get("flags", {}) if m else {}


def revised_config(root_cfg: PipelineConfig, root: str, applies: list[str]) -> PipelineConfig:
    return root_cfg.with_overrides({"review": {"revision_of": root, "corrections": list(applies)}})


def build_revision(store: ObjectStore, video_id: str, root: str, applies: list[str], *, _interrupt=None) -> tuple[str, list[dict]]:
    """Make (or finish) the revised run of ``root`` with the corrections ``applies``; its hash."""
    root_cfg, root_refine, frames, iprefix, tracks = _run_state(store, video_id, root)
    cfg = revised_config(root_cfg, root, applies)
    new = cfg.hash
    runner.ensure_run_config(store, video_id, cfg)
    # 1. the upstream stages, referenced
    digests: dict[str, str] = {}
    for stage in REFERENCED:
        m = runner.load_manifest(store, video_id, root, stage)
        if m is None:
            raise MissingUpstream(f"run {root} of video {video_id} has no committed {stage} stage")
        copy = dict(m, run=new, config_hash=new, referenced_from=root,
                    upstream={d: digests[d] for d in runner.STAGES[stage].upstream})
        store.put_json(layout.manifest_key(video_id, new, stage), copy)
        digests[stage] = _digest(copy)
    # 2. the corrections, in order (a later one's frame replaces an earlier one's)
    corrected: dict[int, np.ndarray] = {}
    records = []
    for cid in applies:
        rec, fr = cmod.load(store, video_id, cid)
        records.append(rec)
        corrected.update(fr)
    base = lambda f: idmap_png.decode_png(store.get_bytes(f"{iprefix}{f:05d}.png"))  # noqa: E731
    result = refollow(frames, corrected, base, build_propagator(cfg, frames.width, store=store),
                      agree_iou=cfg.review.refollow_agree_iou)
    if _interrupt:
        _interrupt("refollow")
    # 3. the revised refine stage: the original's labels, revised frames replaced
    _write_refine(store, video_id, new, cfg, root_refine, iprefix, len(frames), tracks, records, result,
                  upstream={"decode": digests["decode"], "propagate": digests["propagate"]})
    # 4. QA and the suites, as for any run
    for stage in ("qa", "validate"):
        runner.execute(stage, store=store, config=cfg, video_id=video_id, force=True)
    return new, result.spans


def _digest(manifest: dict) -> str:
    # the stage runner's upstream digest (tasks/stages/runner.py): a referenced manifest must
    # look committed to it, or `python -m tasks qa --run <revised>` would redo the upstream stages
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def _write_refine(store, video_id, run, cfg, root_refine, iprefix, n, tracks: dict[int, Track], records, result, *, upstream):
    prefix = layout.stage_prefix(video_id, run, "refine")
    mkey = layout.manifest_key(video_id, run, "refine")
    store.delete(mkey)
    store.delete_prefix(prefix)
    writer = StageWriter(store, prefix)
    t0 = _dt.datetime.now(_dt.UTC)
    vocab = master()
    tracks = {k: Track(t.category, t.isthing, dict(t.provenance), t.born, t.origin, t.merged_into) for k, t in tracks.items()}
    human_frames = sorted(result.human)
    changed: dict[int, set[int]] = {}
    for span in result.spans:
        for k in span["tracks"]:
            changed.setdefault(k, set()).update(range(span["frames"][0], span["frames"][1] + 1))
    who = sorted({r["author"] for r in records})
    for rec in records:
        for k_str, cat in rec["classes"].items():
            k = int(k_str)
            if k not in tracks:
                first = min((f for f in rec["frames"]), default=0)
                tracks[k] = Track(cat, not vocab.is_stuff(cat), {}, first, "human")
            elif tracks[k].category != cat:
                tracks[k].provenance["machine_category"] = tracks[k].provenance.get("machine_category", tracks[k].category)
                tracks[k] = Track(cat, not vocab.is_stuff(cat), tracks[k].provenance, tracks[k].born, tracks[k].origin)
    present_in_human: dict[int, list[int]] = {}
    for t in range(n):
        data = result.frames.get(t)
        if data is None:
            data = store.get_bytes(f"{iprefix}{t:05d}.png")
        elif t in result.human:
            ids = np.unique(idmap_png.decode_png(data))
            for k in ids[ids > 0].tolist():
                present_in_human.setdefault(int(k), []).append(t)
        writer.put_bytes(f"idmaps/{t:05d}.png", data, "image/png")
    for k, tr in tracks.items():
        h = {}
        if k in present_in_human:
            h["frames"] = present_in_human[k]
        if k in changed:
            h["refollowed_frames"] = [int(x) for x in sorted(changed[k])]
        if "machine_category" in tr.provenance or tr.origin == "human":
            h["category"] = True
        if h:
            tr.provenance["human"] = dict(h, by=who, corrections=[r["id"] for r in records])
    events = store.get_json(runner.output_key(store, root_refine, "events"))
    events["revision"] = {"corrections": [r["id"] for r in records], "human_frames": human_frames,
                          "refollowed": result.spans, "propagator_steps": result.steps,
                          "revised_frames": sorted(result.frames)}
    writer.put_json("tracks.json", tracks_to_json(tracks))
    writer.put_json("events.json", events)
    outputs = {"idmaps": writer.key("idmaps/"), "tracks": writer.key("tracks.json"), "events": writer.key("events.json")}
    camera = root_refine.get("keys", {}).get("camera")
    if camera is not None:
        outputs["camera"] = camera
    stats = dict(root_refine.get("stats", {}))
    stats.update(tracks=sum(tr.active for tr in tracks.values()), human_frames=len(human_frames),
                 revised_frames=len(result.frames), corrections=len(records))
    manifest = runner.build_manifest("refine", video_id, run, cfg, StageOutput(outputs=outputs, stats=stats), writer,
                                     upstream, t0, time.perf_counter())
    store.put_json(mkey, manifest)
