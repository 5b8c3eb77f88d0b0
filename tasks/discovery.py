"""Which uploads a nightly run should label, and what became of them.

New uploads are found by listing ``raw/`` and keeping objects whose last-modified time falls in
the run's data interval, so no external state is needed and a re-run of the same interval finds
the same videos (stages are idempotent, so finding a video again costs nothing). A manual run
can name object keys or a prefix instead.
"""

from __future__ import annotations

import datetime as _dt
import logging

from tasks import layout
from tasks.errors import PermanentError
from tasks.storage import ObjectStore

log = logging.getLogger(__name__)


def quarantined_keys(store: ObjectStore) -> dict[str, dict]:
    out = {}
    for info in store.list(layout.QUARANTINE):
        try:
            rec = store.get_json(info.key)
        except Exception:  # noqa: BLE001 - a damaged record must not stop discovery
            log.warning("unreadable quarantine record %s", info.key, exc_info=True)
            continue
        if rec.get("key"):
            out[rec["key"]] = rec
    return out


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
    """Object keys to label, oldest first, and a small report of what was left out and why."""
    report: dict = {"quarantined_skipped": [], "over_limit": 0}
    if keys:
        missing = [k for k in keys if not store.exists(k)]
        if missing:
            raise PermanentError(f"these object keys do not exist in {store.uri()}: {', '.join(missing)}")
        found = list(dict.fromkeys(keys))
    else:
        pfx = prefix if prefix is not None else layout.RAW
        if not pfx.startswith(layout.RAW):
            raise PermanentError(f"uploads live under {layout.RAW!r}; prefix {pfx!r} is outside it")
        infos = [i for i in store.list(pfx) if not i.key.endswith("/")]
        if prefix is None:
            if start is None or end is None:
                raise PermanentError("a data interval (start, end) is needed when no keys or prefix are given")
            infos = [i for i in infos if start <= i.modified < end]
        found = [i.key for i in sorted(infos, key=lambda i: (i.modified, i.key))]
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


def summarize(store: ObjectStore, keys: list[str], results: list[dict]) -> dict:
    """Per upload: labeled (with its video id), quarantined (with the reason) or not finished."""
    done = {r["key"]: r for r in results if r}
    q = quarantined_keys(store)
    rows = []
    for k in keys:
        if k in done:
            rows.append({"key": k, "status": "ready", "video_id": done[k]["video_id"], "run": done[k]["run"]})
        elif k in q:
            rows.append({"key": k, "status": "quarantined", "reason": q[k]["reason"], "message": q[k]["message"]})
        else:
            rows.append({"key": k, "status": "not finished (failed, duplicate, or still to retry)"})
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"].split(" ")[0]] = counts.get(r["status"].split(" ")[0], 0) + 1
    return {"videos": rows, "counts": counts}
