"""What is in a store: videos and how far each run got, quarantined uploads, releases.

``python -m tasks status`` prints it; ``make demo`` ends with it so a user sees where the
release, the preview videos and the quality reports are.
"""

from __future__ import annotations

from tasks import layout
from tasks.errors import ObjectNotFound
from tasks.stages.release import published_versions
from tasks.stages.runner import ORDER, output_key
from tasks.storage import ObjectStore


def _local(store: ObjectStore, key: str) -> str:
    """A path a user can open (local store) or the object URI."""
    path = getattr(store, "path", None)
    return str(path(key)) if callable(path) else store.uri(key)


def collect(store: ObjectStore) -> dict:
    videos = []
    for vprefix in store.list_prefixes(layout.VIDEOS):
        vid = vprefix[len(layout.VIDEOS):].rstrip("/")
        try:
            source = store.get_json(layout.source_key(vid))
        except ObjectNotFound:
            source = {}
        runs = []
        for rprefix in store.list_prefixes(vprefix + "runs/"):
            run = rprefix.rstrip("/").rsplit("/", 1)[-1]
            done = [s for s in ORDER if store.exists(layout.manifest_key(vid, run, s))]
            entry = {"run": run, "stages_done": done, "ready": "validate" in done}
            if "qa" in done:
                qa = store.get_json(layout.manifest_key(vid, run, "qa"))
                entry["preview"] = _local(store, output_key(store, qa, "preview"))
                entry["annotations"] = _local(store, output_key(store, qa, "annotations"))
                entry["flags"] = qa["stats"].get("flags", {})
            if "validate" in done:
                v = store.get_json(layout.manifest_key(vid, run, "validate"))
                entry["quality_report"] = _local(store, output_key(store, v, "report"))
            runs.append(entry)
        quarantined = None
        if store.exists(layout.quarantine_key(vid)):
            q = store.get_json(layout.quarantine_key(vid))
            quarantined = {"reason": q["reason"], "message": q["message"]}
        videos.append({"video_id": vid, "key": source.get("key"), "runs": runs, "quarantined": quarantined})
    quarantine = []
    for info in store.list(layout.QUARANTINE):
        q = store.get_json(info.key)
        quarantine.append({"video_id": q["video_id"], "key": q.get("key"), "reason": q["reason"], "message": q["message"]})
    releases = []
    for v in published_versions(store):
        p = layout.release_prefix(v)
        if store.exists(p + layout.MANIFEST):
            releases.append({"version": v, "path": _local(store, p + "annotations.json").rsplit("/", 1)[0],
                             "quality_report": _local(store, p + "gx_report.json"),
                             "data_docs": (_local(store, p + "data_docs/index.html")
                                           if store.exists(p + "data_docs/index.html") else None),
                             "dataset_card": _local(store, p + "DATASET_CARD.md")})
    return {"store": store.uri(), "videos": videos, "quarantine": quarantine, "releases": releases}


def format_status(s: dict) -> str:
    lines = [f"store: {s['store']}", ""]
    if s["releases"]:
        r = s["releases"][-1]
        lines += [f"latest release: v{r['version']}  ({len(s['releases'])} published)",
                  f"  release:        {r['path']}",
                  f"  quality report: {r['quality_report']}"
                  + (f"\n  data docs:      {r['data_docs']}" if r.get("data_docs") else ""),
                  f"  dataset card:   {r['dataset_card']}", ""]
    else:
        lines += ["no release published yet", ""]
    lines.append(f"videos: {len(s['videos'])}")
    for v in s["videos"]:
        lines.append(f"  {v['video_id']}  {v['key']}" + (f"  QUARANTINED: {v['quarantined']['reason']}" if v["quarantined"] else ""))
        for r in v["runs"]:
            last = r["stages_done"][-1] if r["stages_done"] else "-"
            lines.append(f"    run {r['run']}: {'ready' if r['ready'] else 'up to ' + last}")
            if "preview" in r:
                lines.append(f"      preview:        {r['preview']}")
            if "quality_report" in r:
                lines.append(f"      quality report: {r['quality_report']}")
            if r.get("flags"):
                lines.append(f"      review flags:   {r['flags']}")
    if s["quarantine"]:
        lines += ["", f"quarantined uploads: {len(s['quarantine'])}"]
        for q in s["quarantine"]:
            lines.append(f"  {q['key']}: {q['reason']} — {q['message']}")
    return "\n".join(lines)


def review_package(store: ObjectStore, video_id: str, run: str | None = None, expires_hours: float = 48.0) -> dict:
    """What a reviewer needs for one video: the flags with links to their crops, the preview and
    the labels. Links are presigned GETs on an S3/MinIO store (minted now, valid ``expires_hours``),
    local paths otherwise; they are not stored anywhere, since they expire."""
    from datetime import timedelta

    from tasks.errors import MissingUpstream

    runs = [r for v in collect(store)["videos"] if v["video_id"] == video_id for r in v["runs"] if "preview" in r]
    if run is not None:
        runs = [r for r in runs if r["run"] == run]
    if not runs:
        raise MissingUpstream(f"video {video_id} has no QA output" + (f" for run {run}" if run else "")
                              + "; run the pipeline up to the qa stage first")
    run = runs[-1]["run"]
    qa = store.get_json(layout.manifest_key(video_id, run, "qa"))
    presign = getattr(store, "presigned_get", None)

    def link(key: str) -> str:
        return presign(key, timedelta(hours=expires_hours)) if callable(presign) else _local(store, key)

    flags = store.get_json(output_key(store, qa, "flags"))
    for f in flags["flags"]:
        if f.get("crop"):
            f["crop_url"] = link(f["crop"])
    return {"video_id": video_id, "run": run, "preview": link(output_key(store, qa, "preview")),
            "annotations": link(output_key(store, qa, "annotations")), "rho": flags.get("rho"),
            "flags": flags["flags"], "links_expire_hours": expires_hours if callable(presign) else None}
