"""Corrections landing in the store: ``corrections/inbox/{video_id}/{name}.xml|json`` (issue 15 §4).

A reviewer (or the tool's webhook) drops a CVAT XML or a release JSON there; the
``leader360v_revise`` DAG finds it (:func:`pending`) and imports it (:func:`process`): the
file then moves to ``corrections/inbox/_done/{video_id}/`` (its content is also kept with the
correction, ``corrections/{video_id}/{id}/source.*``), or, when it cannot be applied, to
``corrections/inbox/_rejected/{video_id}/`` with ``{name}.problems.json`` listing every problem
-- so a bad file is reported once, not retried on every run. Any other failure (store, lease)
leaves the file in the inbox for the next attempt.
"""

from __future__ import annotations

import re

from tasks.errors import CorrectionRejected
from tasks.review.corrections import CORRECTIONS
from tasks.review.revise import import_corrections

INBOX = f"{CORRECTIONS}inbox/"
DONE = f"{INBOX}_done/"
REJECTED = f"{INBOX}_rejected/"
_VIDEO = re.compile(r"^[0-9a-f]{16}$")


def pending(store) -> dict[str, list[str]]:
    """video id -> keys of the correction files waiting for it, oldest name first."""
    out: dict[str, list[str]] = {}
    for info in store.list(INBOX):
        rest = info.key[len(INBOX):]
        parts = rest.split("/")
        if len(parts) != 2 or not _VIDEO.match(parts[0]) or not parts[1].endswith((".xml", ".json")):
            continue          # _done/, _rejected/, or something that is not a corrections file
        out.setdefault(parts[0], []).append(info.key)
    return {v: sorted(keys) for v, keys in sorted(out.items())}


def _move(store, key: str, dst: str) -> None:
    store.copy(key, dst)
    store.delete(key)


def process(store, video_id: str, keys: list[str], *, author: str | None = None) -> list[dict]:
    """Import each file in order (each builds on the one before); one result per file."""
    results = []
    for key in keys:
        name = key.rsplit("/", 1)[-1]
        try:
            r = import_corrections(store, video_id, store.get_bytes(key), source_name=name, author=author)
        except CorrectionRejected as exc:
            store.put_json(f"{REJECTED}{video_id}/{name}.problems.json", {"file": name, "problems": exc.problems})
            _move(store, key, f"{REJECTED}{video_id}/{name}")
            results.append({"file": name, "status": "rejected", "problems": exc.problems})
            continue
        _move(store, key, f"{DONE}{video_id}/{r.correction}-{name}")
        results.append({"file": name, **r.to_json()})
    return results
