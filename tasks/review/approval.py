"""The human gate (issue 15 §4): which runs need a person before a release, what the person is
shown, what they decided, and which videos a release may take.

* A run **needs review** when its QA flags number more than ``review.gate_max_flags`` of the
  configuration the nightly DAG run uses (None: no gate). That limit changes no label, so it is not
  part of the run's hash (tasks/config.py ``canonical_json``): turning the gate on names no new run.
  Runs recorded before carry it in their ``config.json``; it still holds them (``legacy limit``).
* Everything the gate knows about a run is one record, ``reviews/{video_id}/{run}/decision.json``,
  replaced atomically (the store's put is a write-then-rename, a single PUT on S3):
  ``pending`` -- the nightly DAG held the run (:func:`apply_gate`, with the limit and the flag
  count), then the person's ``approved`` or ``rejected`` with who, when and why (the reviewer's
  comment from the gate's form). A pending record is written before the nightly DAG announces
  ready videos, so a release that starts at once already sees the hold.
* The nightly DAG puts a held run in front of a person (a deferrable ``ApprovalOperator``,
  plugins/leader360v_airflow/review_gate.py) with :func:`gate_request`: the checker's summary and
  comments, and links to the review package and to a CVAT task exported into the store
  (``reviews/{video_id}/{run}/cvat/``).
* **Reject** keeps the video out of every release until a person's corrections make a revision
  (``review import``, or the ``leader360v_revise`` DAG): the revised run is a new run whose labels
  are a person's, so it is human-reviewed by construction. A rejected run is not asked about again.
* :func:`release_filter` is what the release calls: it keeps a video when its run needs no review,
  was approved, or is a revision made from a person's corrections, and says which were reviewed.
"""

from __future__ import annotations

import datetime as _dt
import logging
import tempfile
from datetime import timedelta
from pathlib import Path

from tasks import layout
from tasks.errors import ObjectNotFound
from tasks.stages import runner

log = logging.getLogger(__name__)

REVIEWS = "reviews/"
_MAX_COMMENTS_IN_BODY = 25


def review_prefix(video_id: str, run: str) -> str:
    return f"{REVIEWS}{layout.check_video_id(video_id)}/{layout.check_run_id(run)}/"


def flag_count(store, video_id: str, run: str) -> int:
    qa = runner.load_manifest(store, video_id, run, "qa")
    return sum((qa or {}).get("stats", {}).get("flags", {}).values())


PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"


def legacy_limit(config) -> int | None:
    """The gate limit a run's own ``config.json`` carries: only runs recorded while
    ``review.gate_max_flags`` was part of the run hash have one (new runs record None)."""
    return config.review.gate_max_flags


def needs_review(store, video_id: str, run: str, gate_max_flags: int | None = None, *, config=None) -> bool:
    """More QA flags than ``gate_max_flags`` (the DAG run's configuration; None: the run's legacy
    limit, else no gate), unless the labels already are a person's corrections."""
    cfg = config or runner.load_run_config(store, video_id, run)
    limit = gate_max_flags if gate_max_flags is not None else legacy_limit(cfg)
    if limit is None or cfg.review.revision_of:
        return False      # no gate configured, or the labels already are a person's corrections
    return flag_count(store, video_id, run) > limit


def _record_key(video_id: str, run: str) -> str:
    return review_prefix(video_id, run) + "decision.json"


def gate_record(store, video_id: str, run: str) -> dict | None:
    """The run's gate record (pending, approved or rejected), or None."""
    try:
        rec = store.get_json(_record_key(video_id, run))
    except ObjectNotFound:
        return None
    return rec if isinstance(rec, dict) else None


def decision(store, video_id: str, run: str) -> dict | None:
    """A person's decision on the run (``approved``/``rejected`` with who, when, why), or None."""
    rec = gate_record(store, video_id, run)
    return rec if rec is not None and rec.get("decision") in (APPROVED, REJECTED) else None


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def record_decision(store, video_id: str, run: str, *, approved: bool, by: str | None, at: str | None = None,
                    note: str | None = None) -> dict:
    """Record a person's decision (replacing a pending record or an earlier decision, atomically);
    the limit and flag count the gate held the run with are kept."""
    held = gate_record(store, video_id, run) or {}
    rec = {"video_id": video_id, "run": run, "decision": APPROVED if approved else REJECTED, "by": by or "unknown",
           "at": at or _now(), "note": (note or "").strip() or None,
           "gate_max_flags": held.get("gate_max_flags"), "flags": held.get("flags")}
    store.put_json(_record_key(video_id, run), rec)
    return rec


def apply_gate(store, video_id: str, run: str, gate_max_flags: int | None, *, by: str = "leader360v_nightly") -> str:
    """The gate's verdict on a ready run under the DAG run's limit, recorded in the store:
    ``approved``/``rejected`` (a person decided: kept as it is), ``held`` (more flags than the
    limit: a pending record, written once per limit), or ``ready`` (no gate or few enough flags:
    a pending record of an earlier, stricter run is removed -- the configuration now in use lets
    the run through)."""
    rec = gate_record(store, video_id, run)
    if rec is not None and rec.get("decision") in (APPROVED, REJECTED):
        return rec["decision"]
    if needs_review(store, video_id, run, gate_max_flags):
        limit = gate_max_flags if gate_max_flags is not None else legacy_limit(runner.load_run_config(store, video_id, run))
        if rec is None or rec.get("gate_max_flags") != limit:
            store.put_json(_record_key(video_id, run), {
                "video_id": video_id, "run": run, "decision": PENDING, "by": by, "at": _now(), "note": None,
                "gate_max_flags": limit, "flags": flag_count(store, video_id, run)})
        return "held"
    if rec is not None:
        store.delete(_record_key(video_id, run))
    return "ready"


def human_review(store, video_id: str, run: str) -> tuple[bool, str | None]:
    """``(releasable, how a person reviewed it or None)``."""
    cfg = runner.load_run_config(store, video_id, run)
    if cfg.review.revision_of:
        n = len(cfg.review.corrections)
        return True, f"corrected by a person ({n} correction{'s' if n != 1 else ''} re-followed from run {cfg.review.revision_of})"
    rec = gate_record(store, video_id, run) or {}
    if rec.get("decision") == APPROVED:
        return True, f"approved by {rec.get('by')} at {rec.get('at')}"
    if rec.get("decision") in (REJECTED, PENDING):
        return False, None
    if needs_review(store, video_id, run, config=cfg):    # a legacy limit in the run's config.json
        return False, None
    return True, None


def release_filter(store, rows: list[dict]) -> list[dict]:
    """The release's rows without the videos that wait at the human gate or were rejected there;
    each kept row gets ``human_review`` (None or how) and its ``why`` says so, so the dataset card
    shows it."""
    out = []
    for r in rows:
        ok, how = human_review(store, r["video_id"], r["run"])
        if not ok:
            d = decision(store, r["video_id"], r["run"])
            if d is not None:
                log.warning("video %s run %s left out of the release: rejected by %s at %s%s; it waits for "
                            "corrections (python -m tasks review export --video-id %s --run %s --format cvat)",
                            r["video_id"], r["run"], d.get("by"), d.get("at"),
                            f" ({d['note']})" if d.get("note") else "", r["video_id"], r["run"])
            else:
                log.warning("video %s run %s left out of the release: %d QA flags wait for a person's approval or "
                            "corrections (python -m tasks review show --video-id %s)", r["video_id"], r["run"],
                            flag_count(store, r["video_id"], r["run"]), r["video_id"])
            continue
        row = dict(r, human_review=how)
        if how:
            row["why"] = f"{r.get('why') or 'newest validated configuration'}; human-reviewed: {how}"
        out.append(row)
    return out


def human_reviewed_count(rows: list[dict]) -> int:
    return sum(1 for r in rows if r.get("human_review"))


def _link(store, key: str, hours: float) -> str:
    presign = getattr(store, "presigned_get", None)
    if callable(presign):
        return presign(key, timedelta(hours=hours))
    path = getattr(store, "path", None)
    return str(path(key)) if callable(path) else store.uri(key)


def gate_request(store, video_id: str, run: str, gate_max_flags: int | None = None, *,
                 expires_hours: float = 168.0) -> dict:
    """What the human gate shows for one run: subject and Markdown body (the checker's summary and
    comments, links to the preview, labels, crops and a CVAT task exported into the store)."""
    from tasks.review.checker import check_run
    from tasks.review.export import export_cvat

    cfg = runner.load_run_config(store, video_id, run)
    comments = check_run(store, video_id, run, cfg)
    prefix = review_prefix(video_id, run) + "cvat/"
    with tempfile.TemporaryDirectory(prefix="l360-gate-") as tmp:
        export_cvat(store, video_id, run, Path(tmp), config=cfg, comments=comments)
        for name in ("annotations.xml", "release.json", "comments.json"):
            store.put_file(prefix + name, Path(tmp) / name)
    qa = runner.load_manifest(store, video_id, run, "qa")
    n = flag_count(store, video_id, run)
    limit = gate_max_flags if gate_max_flags is not None else legacy_limit(cfg)
    lines = [f"**{comments['summary']}** (more than the {limit} flag(s) this configuration lets "
             "through without a person).", "",
             "Approve: the video goes into the next release as labeled. Reject (say why in the comment: "
             "the ops dashboard shows it): it stays out of every release and waits for corrections "
             f"(`python -m tasks review import FILE --video-id {video_id} --run {run}`, or drop the file under "
             f"`corrections/inbox/{video_id}/` for the `leader360v_revise` DAG).", "",
             "### Links",
             f"- preview: {_link(store, runner.output_key(store, qa, 'preview'), expires_hours)}",
             f"- labels (release JSON): {_link(store, runner.output_key(store, qa, 'annotations'), expires_hours)}",
             f"- CVAT task (annotations.xml, CVAT for video 1.1): {_link(store, prefix + 'annotations.xml', expires_hours)}",
             f"- the frames: `{runner.output_key(store, qa, 'frames')}` (or `python -m tasks review export "
             f"--video-id {video_id} --run {run} --format cvat --out DIR` for a folder with images/)",
             f"- review package: `python -m tasks review show --video-id {video_id} --run {run}`", "",
             "### Comments"]
    for c in comments["comments"][:_MAX_COMMENTS_IN_BODY]:
        crop = f" ([crop]({_link(store, c['crop'], expires_hours)}))" if c.get("crop") else ""
        lines.append(f"- {c['text']}{crop}")
    if len(comments["comments"]) > _MAX_COMMENTS_IN_BODY:
        lines.append(f"- … and {len(comments['comments']) - _MAX_COMMENTS_IN_BODY} more in comments.json")
    return {"video_id": video_id, "run": run, "flags": n,
            "subject": f"Review video {video_id} (run {run}): {n} QA flags", "body": "\n".join(lines),
            "cvat": prefix + "annotations.xml"}
