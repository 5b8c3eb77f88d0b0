"""The stage contract (docs/ARCHITECTURE.md, "The stage contract").

A stage is a plain function ``run(inputs, config, store) -> StageOutput``. It reads its
upstream outputs through the URIs in ``inputs.upstream`` and writes its own outputs through a
:class:`StageWriter`. The :mod:`runner <tasks.stages.runner>` wraps every stage with the
contract's guarantees: idempotent skip, atomic commit (outputs first, ``_MANIFEST.json`` last),
typed failure with quarantine. What goes back to the orchestrator (XCom, or
``/airflow/xcom/return.json`` in a pod) is :meth:`StageResult.to_json`: URIs and small stats.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from tasks.storage import ObjectStore


@dataclass
class StageInputs:
    video_id: str
    run: str
    # manifests of the stages this one depends on, by stage name
    upstream: dict[str, dict] = field(default_factory=dict)
    # stage-specific parameters that are not configuration (e.g. ingest's raw key)
    params: dict[str, Any] = field(default_factory=dict)

    def output_key(self, store: ObjectStore, stage: str, name: str) -> str:
        """Object key of output ``name`` of upstream ``stage``."""
        from tasks.stages.runner import output_key

        try:
            return output_key(store, self.upstream[stage], name)
        except KeyError:
            raise KeyError(f"upstream stage {stage!r} has no output {name!r}") from None

    def stats(self, stage: str) -> dict:
        return self.upstream[stage].get("stats", {})


class StageWriter:
    """Writes a stage's outputs under its prefix and remembers their checksums."""

    def __init__(self, store: ObjectStore, prefix: str):
        self.store = store
        self.prefix = prefix
        self.files: dict[str, dict] = {}

    def key(self, rel: str) -> str:
        return self.prefix + rel

    def put_bytes(self, rel: str, data: bytes, content_type: str | None = None) -> str:
        key = self.key(rel)
        self.store.put_bytes(key, data, content_type=content_type)
        self.files[key] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        return key

    def put_json(self, rel: str, obj: Any) -> str:
        import json

        data = json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return self.put_bytes(rel, data, "application/json")

    def put_file(self, rel: str, path, content_type: str | None = None) -> str:
        key = self.key(rel)
        h = hashlib.sha256()
        size = 0
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
                size += len(chunk)
        self.store.put_file(key, path, content_type=content_type)
        self.files[key] = {"sha256": h.hexdigest(), "size": size}
        return key


@dataclass
class StageOutput:
    """What a stage function returns: named output keys and small, JSON-able stats."""

    outputs: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    video_id: str | None = None  # ingest discovers the id; other stages leave it None


@dataclass
class StageResult:
    stage: str
    video_id: str
    run: str
    status: str                 # "done" | "skipped" (committed earlier) | "duplicate"
    manifest_uri: str
    outputs: dict[str, str]     # name -> URI
    stats: dict[str, Any]
    seconds: float

    def to_json(self) -> dict:
        return {
            "stage": self.stage, "video_id": self.video_id, "run": self.run, "status": self.status,
            "manifest": self.manifest_uri, "outputs": self.outputs, "stats": self.stats,
            "seconds": round(self.seconds, 3),
        }
