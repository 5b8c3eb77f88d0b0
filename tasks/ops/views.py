"""The data of each dashboard page, from the store (issue 14). Pure: no Airflow, no HTML.

Airflow's own states (failed uploads, pools, task instances) are passed in by the plugin, which
reads them from Airflow's database; this module only merges them with what the store says.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections import Counter, defaultdict

from tasks import layout
from tasks.errors import ObjectNotFound
from tasks.ops.index import STATUS_LABELS, STATUSES, OpsIndex, RunEntry, Summary
from tasks.stages import STAGE_NAMES
from tasks.stages.release import published_versions
from tasks.stages.runner import output_key
from tasks.storage import ObjectStore


class VideoNotFound(LookupError):
    """No video with that id in the store (the dashboard answers 404 with a page)."""


class ReleaseNotFound(LookupError):
    """No published release with that version."""


def _day(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.UTC).date().isoformat()


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method), None for no values."""
    if not values:
        return None
    v = sorted(values)
    pos = (len(v) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


# -- overview ----------------------------------------------------------------------------------
# a Summary row: [video_id, status, last activity, newest run, stages committed, flags, reason (quarantine's or
# rejection's), raw key]
def overview(summary: Summary, *, days: int = 14, failed_uploads: list[dict] | None = None,
             video_keys: dict[str, str] | None = None, now: _dt.datetime | None = None) -> dict:
    """Videos per day by status, stage durations p50/p95 over the newest ``durations_n`` manifests
    of each stage, failures by reason, open review flags.

    ``failed_uploads``: Airflow's failed stage task instances (``{"key", "stage", "when"}``, the
    newest try of each upload), ``video_keys``: raw key of the videos that are not finished (so a
    video still in progress whose upload failed in Airflow counts as failed, once).
    """
    now = now or _dt.datetime.now(_dt.UTC)
    first = (now - _dt.timedelta(days=days - 1)).date()
    day_list = [(first + _dt.timedelta(days=i)).isoformat() for i in range(days)]
    start = _dt.datetime.combine(first, _dt.time(), _dt.UTC).timestamp()
    per_day = {d: dict.fromkeys(STATUSES, 0) for d in day_list}
    totals = dict.fromkeys(STATUSES, 0)
    failed_keys = {f["key"]: f for f in (failed_uploads or []) if f.get("key")}
    video_keys = video_keys or {}
    counted_failed: set[str] = set()
    reasons: Counter = Counter()
    flags: Counter = Counter()
    for vid, status, last, _run, _n, fl, reason, _key in summary.rows:
        if status == "in_progress" and video_keys.get(vid) in failed_keys:
            status = "failed"
            counted_failed.add(video_keys[vid])
        totals[status] += 1
        if last and last >= start:
            d = _day(last)
            if d in per_day:
                per_day[d][status] += 1
        if reason and status == "quarantined":
            reasons[f"quarantined: {reason}"] += 1
        if fl:
            flags.update(fl)
    for key, f in failed_keys.items():   # uploads that failed before they had a video id
        if key in counted_failed:
            continue
        totals["failed"] += 1
        d = str(f.get("when", ""))[:10]
        if d in per_day:
            per_day[d]["failed"] += 1
    for f in failed_keys.values():
        reasons[f"failed at {f.get('stage', '?')}"] += 1
    durations = {stage: {"n": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95)}
                 for stage, v in ((s, summary.durations.get(s, [])) for s in STAGE_NAMES)}
    return {"days": day_list, "per_day": per_day, "totals": totals, "videos": len(summary.rows),
            "durations": durations, "durations_n": summary.durations_n, "failures": reasons.most_common(),
            "flags": flags.most_common()}


def unfinished_video_ids(summary: Summary) -> list[str]:
    return [r[0] for r in summary.rows if r[1] == "in_progress"]


def source_keys(summary: Summary, video_ids: list[str]) -> dict[str, str]:
    """Raw key of each video (``source.json``, as the scan read it); videos without one are left out."""
    want = set(video_ids)
    return {r[0]: r[7] for r in summary.rows if r[0] in want and r[7]}


def videos_of_keys(summary: Summary, keys: list[str]) -> dict[str, str]:
    """raw upload key -> video id for the keys asked (from the scan: no store read)."""
    by_key = summary.video_of_key()
    return {k: by_key[k] for k in keys if k in by_key}


def videos_table(summary: Summary, *, status: str | None = None, limit: int = 200) -> list[dict]:
    """The newest videos first (by last activity), optionally of one status."""
    rows = []
    for vid, s, last, run, n, fl, reason, _key in summary.rows:   # newest first already
        if status and s != status:
            continue
        rows.append({"video_id": vid, "status": s, "label": STATUS_LABELS.get(s, s), "run": run, "stages": n, "flags": sum(fl.values()) if fl else 0,
                     "when": _dt.datetime.fromtimestamp(last, _dt.UTC).isoformat(timespec="seconds") if last else None,
                     "reason": reason})
        if len(rows) >= limit:
            break
    return rows


# -- releases ----------------------------------------------------------------------------------
def releases(store: ObjectStore, latest: int = 5) -> list[dict]:
    """The newest published releases (a ``_MANIFEST.json``) with their suite result."""
    out = []
    for v in reversed(published_versions(store)):
        p = layout.release_prefix(v)
        try:
            m = store.get_json(p + layout.MANIFEST)
        except (ObjectNotFound, ValueError):
            continue   # being published, or abandoned: not a release
        try:
            gx = store.get_json(p + "gx_report.json")
        except (ObjectNotFound, ValueError):
            gx = {}
        out.append({"version": v, "created": m.get("created"), "files": m.get("files"),
                    "success": gx.get("success"), "summary": gx.get("summary") or "no quality report",
                    "data_docs": store.exists(p + "data_docs/index.html")})
        if len(out) >= latest:
            break
    return out


def release_detail(store: ObjectStore, version: int) -> dict:
    """Dataset card, suite result, class histogram, per-class solid-angle areas, per-video counts,
    checksums and what changed since the previous release."""
    p = layout.release_prefix(version)
    try:
        store.get_json(p + layout.MANIFEST)
    except (ObjectNotFound, ValueError):
        raise ReleaseNotFound(f"release v{version} is not published in {store.uri()}") from None

    def get(rel, default=None):
        try:
            return store.get_json(p + rel)
        except (ObjectNotFound, ValueError):
            return default

    manifest = get("manifest.json", {})
    gx = get("gx_report.json", {})
    doc = get("annotations.json", {"videos": [], "categories": [], "annotations": []})
    try:
        card = store.get_bytes(p + "DATASET_CARD.md").decode("utf-8", errors="replace")
    except ObjectNotFound:
        card = ""
    stats = annotation_stats(doc)
    prev = [v for v in published_versions(store) if v < version]
    changes = None
    if prev:
        try:
            prev_manifest = store.get_json(layout.release_prefix(prev[-1]) + "manifest.json")
            prev_doc = store.get_json(layout.release_prefix(prev[-1]) + "annotations.json")
        except (ObjectNotFound, ValueError):
            prev_manifest, prev_doc = None, None
        if prev_manifest is not None:
            changes = diff_releases(prev_manifest, manifest, annotation_stats(prev_doc), stats)
            changes["previous"] = prev[-1]
    files = manifest.get("files", {})
    return {"version": version, "created": manifest.get("created"), "card": card, "gx": {
        "success": gx.get("success"), "summary": gx.get("summary"),
        "suites": [{"name": s.get("suite") or s.get("name"), "success": s.get("success")} for s in gx.get("suites", [])]},
        "data_docs": store.exists(p + "data_docs/index.html"), "stats": stats,
        "videos": manifest.get("videos", []), "checksums": sorted((k, v.get("sha256"), v.get("size"))
                                                                  for k, v in files.items()),
        "changes": changes}


def annotation_stats(doc: dict) -> dict:
    names = {c["id"]: c["name"] for c in doc.get("categories", [])}
    per_class: Counter = Counter()
    areas: dict[str, list[float]] = defaultdict(list)
    per_video: dict = {}
    uid = {v["id"]: v.get("video_uid", str(v["id"])) for v in doc.get("videos", [])}
    for v in doc.get("videos", []):
        per_video[uid[v["id"]]] = {"frames": int(v.get("length", 0)), "objects": 0, "masks": 0}
    for a in doc.get("annotations", []):
        name = names.get(a.get("category_id"), str(a.get("category_id")))
        per_class[name] += 1
        # mean solid angle of the object over the frames it is visible on (steradians)
        sa = [x for x in (a.get("sphere_areas") or []) if x]
        if sa:
            areas[name].append(sum(sa) / len(sa))
        pv = per_video.setdefault(uid.get(a.get("video_id"), str(a.get("video_id"))), {"frames": 0, "objects": 0, "masks": 0})
        pv["objects"] += 1
        pv["masks"] += sum(1 for s in a.get("segmentations") or [] if s is not None)
    return {"per_class": per_class.most_common(), "areas": {k: sorted(v) for k, v in areas.items()},
            "per_video": per_video}


def diff_releases(old_manifest: dict, new_manifest: dict, old_stats: dict, new_stats: dict) -> dict:
    def vids(m):
        return {r.get("video_id"): r.get("run") for r in m.get("videos", [])}

    a, b = vids(old_manifest), vids(new_manifest)
    oc, nc = dict(old_stats["per_class"]), dict(new_stats["per_class"])
    classes = sorted(set(oc) | set(nc))
    return {"added": sorted(set(b) - set(a)), "removed": sorted(set(a) - set(b)),
            "reconfigured": sorted(v for v in set(a) & set(b) if a[v] != b[v]),
            "classes": [(c, oc.get(c, 0), nc.get(c, 0)) for c in classes if oc.get(c, 0) != nc.get(c, 0)]}


# -- one video ---------------------------------------------------------------------------------
def video_detail(store: ObjectStore, video_id: str, run: str | None = None) -> dict:
    """Everything the video page shows, from its manifests (the newest run unless ``run``)."""
    try:
        layout.check_video_id(video_id)
    except ValueError:
        raise VideoNotFound(f"{video_id!r} is not a video id (16 hex digits)") from None
    try:
        source = store.get_json(layout.source_key(video_id))
    except ObjectNotFound:
        source = None
    except ValueError:
        source = {}
    quarantine = None
    if store.exists(layout.quarantine_key(video_id)):
        try:
            quarantine = store.get_json(layout.quarantine_key(video_id))
        except (ObjectNotFound, ValueError):
            quarantine = {"reason": "unreadable"}
    runs = []
    for rprefix in store.list_prefixes(layout.video_prefix(video_id) + "runs/"):
        r = rprefix.rstrip("/").rsplit("/", 1)[-1]
        stages = {}
        for s in STAGE_NAMES:
            try:
                stages[s] = store.get_json(layout.manifest_key(video_id, r, s))
            except ObjectNotFound:
                continue
            except ValueError:
                stages[s] = {"unreadable": True}
        runs.append({"run": r, "stages": stages,
                     "latest": max((m.get("finished") or "" for m in stages.values()), default="")})
    if source is None and not runs and quarantine is None:
        raise VideoNotFound(f"no video {video_id} in {store.uri()}")
    runs.sort(key=lambda x: (x["latest"], x["run"]))
    chosen = next((x for x in runs if x["run"] == run), None) if run else (runs[-1] if runs else None)
    if run and chosen is None:
        raise VideoNotFound(f"video {video_id} has no run {run}")
    out = {"video_id": video_id, "source": source or {}, "quarantine": quarantine,
           "runs": [x["run"] for x in runs], "run": chosen["run"] if chosen else None,
           "timings": [], "flags": [], "coverage": None, "rotation": None, "thumbnails": [], "preview": None,
           "config_hash": None, "code_versions": [], "gate": None, "review": None}
    if chosen is None:
        return out
    out["review"] = review_state(store, video_id, chosen["run"], chosen["stages"])
    st = chosen["stages"]
    out["config_hash"] = next((m.get("config_hash") for m in st.values() if m.get("config_hash")), chosen["run"])
    out["code_versions"] = sorted({m.get("code_version") for m in st.values() if m.get("code_version")})
    out["timings"] = [{"stage": s, "seconds": OpsIndex._seconds(st[s]) if s in st else None,
                       "finished": st[s].get("finished") if s in st else None, "done": s in st}
                      for s in STAGE_NAMES]

    def key_of(m, name):
        try:
            return output_key(store, m, name)
        except (KeyError, ValueError, TypeError):
            return None

    if "qa" in st:
        out["preview"] = key_of(st["qa"], "preview")
        fk = key_of(st["qa"], "flags")
        if fk:
            try:
                out["flags"] = store.get_json(fk).get("flags", [])
            except (ObjectNotFound, ValueError, AttributeError):
                out["flags"] = []
        idm = key_of(st["qa"], "idmaps")
        n = int((st["qa"].get("stats") or {}).get("frames") or 0)
        if idm and n:
            k = min(8, n)
            out["thumbnails"] = [(i, f"{idm}{i:05d}.png") for i in sorted({round(j * (n - 1) / max(k - 1, 1)) for j in range(k)})]
    if "validate" in st:
        out["gate"] = (st["validate"].get("stats") or {}).get("success", True)
    # coverage over the frames: the refine/propagate events (per check frame), camera rotation per frame
    # (refine's when it committed, else propagate's); a missing or unreadable file leaves its plot out
    for s in ("refine", "propagate"):
        for field, output, series in (("rotation", "camera", rotation_series), ("coverage", "events", coverage_series)):
            key = key_of(st[s], output) if s in st else None
            if key and not out[field]:
                try:
                    out[field] = series(store.get_json(key))
                except (ObjectNotFound, ValueError):
                    pass
    return out


def review_state(store: ObjectStore, video_id: str, run: str, stages: dict) -> dict | None:
    """The human gate's truth for one run (tasks/review/approval.py): its status as the overview
    counts it, the decision (who, when, note), the run it revises, and where its review package and
    CVAT export are. None before the run is validated (the gate sees only validated runs)."""
    from tasks.review import approval

    if "validate" not in stages:
        return None
    rc = None
    try:
        cfg = store.get_json(layout.run_config_key(video_id, run))
        review = (cfg.get("review") if isinstance(cfg, dict) else None) or {}
        rc = {"gate_max_flags": review.get("gate_max_flags"), "revision_of": review.get("revision_of"),
              "corrections": len(review.get("corrections") or ())}
    except (ObjectNotFound, ValueError):
        pass
    flags = ((stages.get("qa") or {}).get("stats") or {}).get("flags") or {}
    rec = approval.gate_record(store, video_id, run)
    entry = RunEntry(run, flags={str(k): int(v) for k, v in flags.items()} if isinstance(flags, dict) else {},
                     review_cfg=rc, decision=rec)
    status = entry.gate_status()
    prefix = approval.review_prefix(video_id, run)
    cvat = prefix + "cvat/annotations.xml"
    return {"status": status, "label": STATUS_LABELS[status], "flags": entry.flag_total,
            "gate_max_flags": entry.gate_limit, "revision_of": (rc or {}).get("revision_of"),
            "corrections": (rc or {}).get("corrections", 0),
            # a person's decision (who, when, why); a pending record is the gate's, shown as the status
            "decision": rec if status in ("approved", "rejected") else None,
            "cvat": cvat if store.exists(cvat) else None,
            "comments": prefix + "cvat/comments.json" if store.exists(prefix + "cvat/comments.json") else None,
            "package": f"python -m tasks review show --video-id {video_id} --run {run}",
            "export": f"python -m tasks review export --video-id {video_id} --run {run} --format cvat --out DIR"}


def rotation_series(camera) -> dict[str, list]:
    """The camera's yaw, pitch and roll relative to frame 0 (degrees) per frame, from ``camera.json``
    (``orientation_ypr_deg``); frames whose rotation could not be estimated are listed in ``failed``."""
    frames = camera.get("frames", []) if isinstance(camera, dict) else (camera or [])
    out: dict[str, list] = {"frame": [], "yaw": [], "pitch": [], "roll": [], "failed": []}
    for i, f in enumerate(frames):
        if not isinstance(f, dict):
            continue
        t = int(f.get("frame", i))
        ypr = f.get("orientation_ypr_deg")
        if not f.get("ok", True):
            out["failed"].append(t)
        if isinstance(ypr, list) and len(ypr) == 3:
            out["frame"].append(t)
            for name, val in zip(("yaw", "pitch", "roll"), ypr):
                out[name].append(float(val))
    return out


def coverage_series(events) -> dict[str, list]:
    """Label coverage per frame, solid angle and pixel fraction (``events.json`` of propagate/refine),
    and the frames where auto-refine acted."""
    if not isinstance(events, dict):
        return {"sphere": [], "pixel": [], "refined": []}
    sphere = events.get("coverage_sphere") or events.get("coverage") or []
    return {"sphere": [float(x) for x in sphere if isinstance(x, int | float)],
            "pixel": [float(x) for x in events.get("coverage_pixel") or [] if isinstance(x, int | float)],
            "refined": sorted({int(e["frame"]) for e in events.get("events", []) if isinstance(e, dict) and "frame" in e})}
