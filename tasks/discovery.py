"""Which uploads a nightly run should label, what was wrong with the request, and what became of
every upload.

**When was it uploaded?** A run labels the uploads of its data interval, by *upload time*:

* ``python -m tasks upload`` records it in a small sidecar, ``uploads/{key below raw/}.json``
  (``{"key", "uploaded", "size"}``); ``--uploaded-at`` records an earlier time for a file
  imported late, so a backfill over that date range finds it;
* an object put under ``raw/`` by any other tool has no sidecar, and its upload time is the
  store's last-modified time (set by MinIO/S3 when the object was written; the local store
  copies bytes, so it is the copy's time too) -- never the mtime of the file it came from.

So no external state is needed, a re-run of an interval finds the same uploads (stages are
idempotent, so finding a video again costs nothing), and a backfill over a range finds exactly
the uploads of that range (issue 11). A manual run can name object keys or a prefix instead.

**A request is checked before any video is touched**: :func:`check_overrides` and
:func:`find_uploads` collect *every* problem (an unknown setting with its likely meaning, a value
of the wrong type, a key that is not in the store with the names beside it, a prefix that matches
nothing with the prefixes that exist) into one :class:`~tasks.errors.RequestInvalid`, which is not
retryable: the operator fixes everything in one go.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import logging
import posixpath
from typing import Any

from tasks import layout
from tasks.errors import ConfigError, ObjectNotFound, RequestInvalid
from tasks.storage import ObjectStore
from tasks.storage.base import ObjectInfo

log = logging.getLogger(__name__)

UPLOADS = "uploads/"  # upload records: uploads/{key below raw/}.json


def upload_record_key(key: str) -> str:
    if not key.startswith(layout.RAW):
        raise ConfigError(f"uploads live under {layout.RAW!r}; {key!r} is outside it (e.g. raw/2026-11-24/clip.mp4)")
    return UPLOADS + key[len(layout.RAW):] + ".json"


def _utc(t: _dt.datetime) -> _dt.datetime:
    return t.replace(tzinfo=_dt.UTC) if t.tzinfo is None else t.astimezone(_dt.UTC)


def record_upload(store: ObjectStore, key: str, *, uploaded: _dt.datetime | None = None) -> dict:
    """Write the upload record of ``key`` (already in the store): its upload time, by default now."""
    info = store.stat(key)
    when = _utc(uploaded) if uploaded is not None else _dt.datetime.now(_dt.UTC)
    rec = {"key": key, "uploaded": when.isoformat(timespec="seconds"), "size": info.size}
    store.put_json(upload_record_key(key), rec)
    return rec


def upload_times(store: ObjectStore, infos: list[ObjectInfo]) -> dict[str, _dt.datetime]:
    """Upload time of each listed object: its record's, else the store's last-modified time."""
    out = {i.key: _utc(i.modified) for i in infos}
    recorded = {r.key for r in store.list(UPLOADS)}
    for i in infos:
        rkey = UPLOADS + i.key[len(layout.RAW):] + ".json"
        if rkey not in recorded:
            continue
        try:
            out[i.key] = _utc(_dt.datetime.fromisoformat(store.get_json(rkey)["uploaded"]))
        except (ObjectNotFound, KeyError, ValueError, TypeError):  # a damaged record must not stop discovery
            log.warning("unreadable upload record %s; using the store's time of %s", rkey, i.key, exc_info=True)
    return out


def upload_time(store: ObjectStore, info: ObjectInfo) -> _dt.datetime:
    """Upload time of one object (one read of its record, no listing)."""
    if info.key.startswith(layout.RAW):
        try:
            return _utc(_dt.datetime.fromisoformat(store.get_json(upload_record_key(info.key))["uploaded"]))
        except ObjectNotFound:
            pass
        except (KeyError, ValueError, TypeError):
            log.warning("unreadable upload record of %s; using the store's time", info.key, exc_info=True)
    return _utc(info.modified)


def quarantine_records(store: ObjectStore) -> list[dict]:
    out = []
    for info in store.list(layout.QUARANTINE):
        try:
            out.append(store.get_json(info.key))
        except Exception:  # noqa: BLE001 - a damaged record must not stop discovery
            log.warning("unreadable quarantine record %s", info.key, exc_info=True)
    return out


def quarantined_keys(store: ObjectStore) -> dict[str, dict]:
    return {rec["key"]: rec for rec in quarantine_records(store) if rec.get("key")}


# -- checking a request ------------------------------------------------------------------------

def check_overrides(overrides: Any) -> list[str]:
    """Problems with a run's ``config_overrides`` (empty: fine), each naming its fix."""
    from tasks.config import PipelineConfig

    if overrides in (None, {}):
        return []
    if not isinstance(overrides, dict):
        return [f"config_overrides must be an object of dotted settings such as {{\"refine.tau\": 0.004}}, "
                f"not {type(overrides).__name__}"]
    try:
        PipelineConfig().with_overrides(overrides)
    except ConfigError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()] or [str(exc)]
        return [f"config_overrides: {ln}" for ln in lines]
    return []


def _missing_key_hint(store: ObjectStore, key: str) -> str:
    folder = posixpath.dirname(key.rstrip("/"))
    names = [i.key for i in store.list(folder + "/" if folder else "", recursive=False)] if folder else []
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    if names:
        return f"{folder}/ holds {len(names)} other object(s)"
    return f"nothing is stored under {folder or '(top level)'}/; upload it with `python -m tasks upload FILE --key {key}`"


def _empty_prefix_hint(store: ObjectStore, prefix: str) -> str:
    parent = posixpath.dirname(prefix.rstrip("/"))
    parent = parent + "/" if parent else layout.RAW
    siblings = store.list_prefixes(parent) if parent.startswith(layout.RAW) else []
    close = difflib.get_close_matches(prefix, siblings, n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    if siblings:
        return f"prefixes under {parent}: " + ", ".join(siblings[:8]) + (" ..." if len(siblings) > 8 else "")
    return f"{parent} holds no folders; check the store ({store.uri()})"


def find_uploads(
    store: ObjectStore,
    *,
    start: _dt.datetime | None = None,
    end: _dt.datetime | None = None,
    keys: list[str] | None = None,
    prefix: str | None = None,
    include_quarantined: bool = False,
    limit: int = 500,
) -> tuple[list[str], dict]:
    """Object keys to label, oldest upload first, and a small report of what was left out and why.

    Raises :class:`RequestInvalid` listing every problem with ``keys`` / ``prefix``. An interval
    with no uploads is not a problem (a quiet night); a prefix or key that matches nothing is.
    """
    report: dict = {"quarantined_skipped": [], "over_limit": 0}
    problems: list[str] = []
    if keys and prefix:
        problems.append(f"give keys or prefix, not both (keys {keys!r}, prefix {prefix!r}); clear one of them")
    if keys:
        bad = [k for k in keys if not isinstance(k, str) or not k.strip()]
        if bad:
            problems.append(f"keys must be object keys such as raw/2026-11-24/clip.mp4, got {bad!r}")
        for k in dict.fromkeys(k for k in keys if k not in bad):
            if not store.exists(k):
                problems.append(f"key {k!r} does not exist in {store.uri()}: {_missing_key_hint(store, k)}")
        if problems:
            raise RequestInvalid(problems)
        found = list(dict.fromkeys(keys))
    else:
        pfx = prefix if prefix is not None else layout.RAW
        if not pfx.startswith(layout.RAW):
            problems.append(f"uploads live under {layout.RAW!r}; prefix {pfx!r} is outside it "
                            f"(e.g. {layout.RAW}2026-11/)")
        elif prefix is None and (start is None or end is None):
            problems.append("a data interval (start, end) is needed when no keys or prefix are given")
        if problems:
            raise RequestInvalid(problems)
        infos = [i for i in store.list(pfx) if not i.key.endswith("/")]
        if prefix is not None and not infos:
            raise RequestInvalid([f"prefix {prefix!r} matches no upload in {store.uri()}: "
                                  f"{_empty_prefix_hint(store, prefix)}"])
        times = upload_times(store, infos)
        if prefix is None:
            start, end = _utc(start), _utc(end)
            infos = [i for i in infos if start <= times[i.key] < end]
        found = [i.key for i in sorted(infos, key=lambda i: (times[i.key], i.key))]
    if not include_quarantined:
        q = quarantined_keys(store)
        report["quarantined_skipped"] = [k for k in found if k in q]
        found = [k for k in found if k not in q]
    if len(found) > limit:
        report["over_limit"] = len(found) - limit
        log.warning("%d uploads found; labeling the oldest %d now, the rest in a run with prefix or keys",
                    len(found), limit)
        found = found[:limit]
    return found, report


def describe_report(found: list[str], report: dict) -> str:
    """One sentence for the log: how many uploads, and what was left out and why."""
    parts = [f"{len(found)} upload{'s' if len(found) != 1 else ''} to label"]
    if report.get("quarantined_skipped"):
        q = report["quarantined_skipped"]
        parts.append(f"{len(q)} left out because quarantined earlier ({', '.join(q[:5])}"
                     + (" ..." if len(q) > 5 else "") + "; `python -m tasks quarantine release ID` lets one back in, "
                     "include_quarantined retries them all)")
    if report.get("over_limit"):
        parts.append(f"{report['over_limit']} left for a later run (max_videos)")
    return "; ".join(parts) + "."


# -- what became of each upload ----------------------------------------------------------------

_BAD = {"failed", "upstream_failed"}


def summarize(store: ObjectStore, keys: list[str], results: list[dict],
              task_states: dict[int, dict[str, str]] | None = None, stages: tuple[str, ...] = (),
              video_ids: dict[int, str] | None = None) -> dict:
    """Per upload: ready (with its video id), quarantined (with the reason), duplicate (of which
    upload), or failed (at which stage) -- the run's summary.

    ``task_states`` (map index -> stage -> Airflow state, map index = position in ``keys``) says
    where an upload stopped; without it an unfinished upload is reported as failed at an unknown
    stage. ``video_ids`` (map index -> id, from ``ingest``'s results) names the video of an
    upload that failed after ingest. ``failed`` counts what a retry or a fix must handle:
    anything but rejected and duplicate input.
    """
    video_ids = video_ids or {}
    done = {r["key"]: r for r in results if r}
    records = quarantine_records(store)
    q = {rec["key"]: rec for rec in records if rec.get("key")}
    # a stage after ingest that rejects the video records its id (it does not know the key)
    q_by_id = {rec["video_id"]: rec for rec in records if rec.get("video_id")}
    task_states = task_states or {}
    rows = []
    for i, k in enumerate(keys):
        states = task_states.get(i, {})
        if k in done:
            rows.append({"key": k, "video_id": done[k]["video_id"], "status": "ready", "run": done[k]["run"],
                         "detail": f"run {done[k]['run']}"})
        elif k in q or video_ids.get(i) in q_by_id:
            rec = q[k] if k in q else q_by_id[video_ids[i]]
            rows.append({"key": k, "video_id": rec.get("video_id"), "status": "quarantined",
                         "reason": rec["reason"], "detail": f"{rec['reason']} at {rec.get('stage', '?')}: {rec['message']}"})
        elif states.get("ingest") == "skipped":
            dup = _duplicate_of(store, k)
            rows.append({"key": k, "video_id": dup[0] if dup else None, "status": "duplicate",
                         "detail": f"same content as {dup[1]}" if dup else "same content as an earlier upload"})
        else:
            stage = next((s for s in stages if states.get(s) in _BAD), None)
            if stage is None and states:
                stage = next((s for s in stages if states.get(s) != "success"), None)
            state = states.get(stage, "") if stage else ""
            rows.append({"key": k, "video_id": video_ids.get(i), "status": "failed", "stage": stage,
                         "detail": (f"{stage} {state.replace('_', ' ')}" if stage else "stopped at an unknown stage")
                         + "; see that task's log"})
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return {"videos": rows, "counts": counts}


def _duplicate_of(store: ObjectStore, key: str) -> tuple[str, str] | None:
    """(video id, first key) of the upload ``key`` duplicates, from the alias records."""
    for vprefix in store.list_prefixes(layout.VIDEOS):
        vid = vprefix[len(layout.VIDEOS):].rstrip("/")
        try:
            aliases = store.get_json(layout.aliases_key(vid))
        except ObjectNotFound:
            continue
        if key in aliases:
            try:
                return vid, store.get_json(layout.source_key(vid))["key"]
            except ObjectNotFound:
                return vid, "an earlier upload"
    return None


def counts_sentence(counts: dict[str, int]) -> str:
    """'1 ready, 2 quarantined, 1 failed' (in that order; zeros left out)."""
    order = ["ready", "quarantined", "duplicate", "failed"]
    parts = [f"{counts[s]} {s}" for s in order if counts.get(s)]
    return ", ".join(parts) if parts else "no uploads"


def summary_table(summary: dict) -> str:
    """The run's summary as a markdown table (the task log, the asset event, the failure message)."""
    lines = ["| upload | video id | status | detail |", "|---|---|---|---|"]
    for r in summary["videos"]:
        detail = str(r.get("detail", "")).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{r['key']}` | {r.get('video_id') or '–'} | {r['status']} | {detail} |")
    if not summary["videos"]:
        lines.append("| – | – | no uploads in this run | – |")
    return "\n".join(lines)
