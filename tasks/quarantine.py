"""The quarantine: videos whose **content** cannot be labeled, and how a person lets one back in.

A video is quarantined when what it *is* makes it unlabelable -- not a video, cut off, no
frames, not 2:1 equirectangular, a display rotation that makes it so (tasks/video/probe.py,
tasks/stages/decode.py). That is permanent for that content (its id is the sha256 of its bytes),
so the record lives under the content id, ``quarantine/{video_id}.json``, and discovery leaves
the upload out of later runs. What a *configuration* asked (a ``video.max_seconds`` the video is
longer than, an fps that gives no frame) is a :class:`~tasks.errors.ConfigError` (exit 2) and is
never quarantined (tasks/video/limits.py; issue 12, point 1: a settings mistake quarantined a
good video forever).

:func:`release_quarantine` lets a video back in (a record written by an older version for a
configuration reason, a rejection that a fixed probe now accepts): it keeps an audit record of
who released it, when, and the record it removed (``audit/quarantine/{video_id}/``), then removes
the quarantine record, so the next run or discovery picks the upload up again: its upload time
becomes the release time (the old one is in the audit record), so the next nightly run's data
interval holds it. The ops dashboard
(plugins) and ``python -m tasks quarantine list|release`` call exactly these two functions.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import uuid

from tasks import layout
from tasks.errors import EXIT_USAGE, InputRejected, ObjectNotFound, PermanentError
from tasks.storage import ObjectStore

log = logging.getLogger(__name__)

# Audit records of released quarantines, outside quarantine/ so that nothing that lists the
# quarantine (discovery, status) mistakes one for a live record.
AUDIT = "audit/quarantine/"
_VIDEO_ID = re.compile(r"^[0-9a-f]{16}$")


class NotQuarantined(PermanentError):
    """``release`` was asked for a video (or key) that has no quarantine record."""

    exit_code = EXIT_USAGE
    label = "not quarantined"


def quarantine_video(store: ObjectStore, video_id: str, key: str | None, stage: str, exc: InputRejected,
                     run: str | None) -> str:
    """Write ``quarantine/{video_id}.json`` for a content rejection; return its key.

    ``key`` is the raw object key; a stage after ingest that does not know it passes ``None`` and
    it is read from the video's ``source.json`` (issue 12, point 9: decode wrote ``"key": null``,
    which left the upload in every later discovery).
    """
    if key is None:
        try:
            key = store.get_json(layout.source_key(video_id)).get("key")
        except (ObjectNotFound, ValueError, AttributeError):
            key = None
    record = {
        "video_id": video_id, "key": key, "stage": stage, "reason": exc.reason, "message": exc.message,
        "details": exc.details, "run": run,
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    qkey = layout.quarantine_key(video_id)
    store.put_json(qkey, record)
    log.warning("quarantined video %s (%s): %s", video_id, exc.reason, exc.message)
    return qkey


def audit_prefix(video_id: str) -> str:
    return f"{AUDIT}{layout.check_video_id(video_id)}/"


def _row(rec: dict, key: str) -> dict:
    """The dashboard's row of one record: id, key, reason, detail, time (plus stage and run)."""
    video_id = rec.get("video_id") or key[len(layout.QUARANTINE):].removesuffix(".json")
    return {"id": video_id, "key": rec.get("key"), "reason": rec.get("reason", "unknown"),
            "detail": rec.get("message", ""), "time": rec.get("time"), "stage": rec.get("stage"),
            "run": rec.get("run")}


def list_quarantined(store: ObjectStore) -> list[dict]:
    """Every quarantined video, oldest first: ``{"id", "key", "reason", "detail", "time", "stage", "run"}``.

    ``key`` is the raw object key the video was uploaded under (``None`` only in records written
    before issue 12 by a stage after ingest). A record that cannot be read is listed with reason
    ``unreadable`` rather than hidden: it still keeps its upload out of discovery.
    """
    rows = []
    for info in store.list(layout.QUARANTINE):
        if not info.key.endswith(".json"):
            continue
        try:
            rec = store.get_json(info.key)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except (ObjectNotFound, ValueError) as exc:
            log.warning("unreadable quarantine record %s: %s", info.key, exc)
            rec = {"reason": "unreadable", "message": f"the record {info.key} cannot be read ({exc}); release it "
                                                      "to let the video be ingested again",
                   "time": info.modified.isoformat(timespec="seconds")}
        rows.append(_row(rec, info.key))
    return sorted(rows, key=lambda r: (str(r["time"] or ""), r["id"]))


def _resolve(store: ObjectStore, video_id_or_key: str) -> str:
    """The video id of a quarantined video named by its id or by its raw key."""
    if not isinstance(video_id_or_key, str) or not video_id_or_key.strip():
        raise NotQuarantined("name the video to release by its 16-hex id (`python -m tasks quarantine list` shows them)")
    name = video_id_or_key.strip()
    if _VIDEO_ID.match(name):
        if store.exists(layout.quarantine_key(name)):
            return name
        raise NotQuarantined(f"video {name} is not quarantined in {store.uri()}; "
                             "`python -m tasks quarantine list` shows what is")
    hits = [r["id"] for r in list_quarantined(store) if r["key"] == name]
    if len(hits) == 1:
        return hits[0]
    known = ", ".join(f"{r['id']} ({r['key'] or 'key unknown'})" for r in list_quarantined(store)[:10])
    raise NotQuarantined(f"{name!r} is neither the id nor the raw key of a quarantined video in {store.uri()}; "
                         + (f"quarantined: {known}" if known else "nothing is quarantined"))


def release_quarantine(store: ObjectStore, video_id: str, *, by: str, restamp_upload: bool = True) -> dict:
    """Let a quarantined video back in; return the audit record.

    ``video_id`` is the 16-hex content id (its raw key is accepted too); ``by`` says who released
    it (a user name, ``airflow:<user>``), kept in the audit record with the time and the removed
    record. The audit record is written first, then the quarantine record is deleted, so the
    record is never lost; the next run or discovery picks the upload up again (and quarantines it
    again if its content still cannot be labeled).
    """
    if not isinstance(by, str) or not by.strip():
        raise NotQuarantined("say who releases the quarantine (by=...): it is kept in the audit record")
    vid = _resolve(store, video_id)
    qkey = layout.quarantine_key(vid)
    try:
        record = store.get_json(qkey)
    except ObjectNotFound:
        raise NotQuarantined(f"video {vid} was released by someone else a moment ago; nothing to do") from None
    except ValueError:
        record = {"video_id": vid, "reason": "unreadable"}
    now = _dt.datetime.now(_dt.UTC)
    key = record.get("key") if isinstance(record, dict) else None
    audit = {"video_id": vid, "key": key, "released_by": by.strip(), "released_at": now.isoformat(timespec="seconds"),
             "record": record}
    akey = f"{audit_prefix(vid)}{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}.json"
    store.put_json(akey, audit)
    audit["uploaded"] = _restamp_upload(store, key, now) if restamp_upload else None
    if audit["uploaded"]:
        store.put_json(akey, audit)
    store.delete(qkey)
    log.warning("released quarantined video %s (%s) by %s; audit record %s", vid,
                audit["record"].get("reason") if isinstance(record, dict) else "?", by, akey)
    return {**audit, "audit_key": akey}


def clear_if_accepted(store: ObjectStore, video_id: str, stage: str, why: str) -> dict | None:
    """Release a quarantine record that ``stage`` itself wrote and now contradicts: the stage has
    just accepted the same content (a record an older version wrote for a configuration reason,
    ``too_long``; or a probe fixed since). Records of other stages stay: passing ingest says
    nothing about what decode found. Returns the audit record, or None."""
    try:
        rec = store.get_json(layout.quarantine_key(video_id))
    except (ObjectNotFound, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("stage") != stage:
        return None
    try:
        out = release_quarantine(store, video_id, by=f"{stage} stage: {why}", restamp_upload=False)
    except NotQuarantined:  # released by someone else meanwhile
        return None
    log.warning("video %s was quarantined by %s (%s) but %s now; quarantine released", video_id, stage,
                rec.get("reason"), why)
    return out


def _restamp_upload(store: ObjectStore, key: str | None, now: _dt.datetime) -> dict | None:
    """Give a released upload the upload time ``now`` so that the next nightly run's data
    interval finds it (a run labels the uploads *of its interval*: one uploaded last week would
    otherwise wait for a manual run). The old time is returned for the audit record."""
    from tasks.discovery import record_upload, upload_time

    if not key or not key.startswith(layout.RAW) or not store.exists(key):
        return None
    before = upload_time(store, store.stat(key))
    after = record_upload(store, key, uploaded=now)["uploaded"]
    return {"before": before.isoformat(timespec="seconds"), "after": after}


def release_history(store: ObjectStore, video_id: str) -> list[dict]:
    """Every audit record of ``video_id``'s released quarantines, oldest first."""
    out = []
    for info in store.list(audit_prefix(video_id)):
        try:
            out.append(store.get_json(info.key))
        except (ObjectNotFound, ValueError):
            log.warning("unreadable quarantine audit record %s", info.key)
    return sorted(out, key=lambda r: str(r.get("released_at", "")))
