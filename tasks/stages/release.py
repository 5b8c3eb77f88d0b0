"""release: a versioned, quality-gated dataset from every ready video.

Three steps, each usable alone (the release DAG runs them as three tasks):

1. :func:`prepare_candidate` — collect the ready videos (a committed ``validate`` manifest,
   not quarantined), merge their annotations, assign splits, stage the candidate under
   ``releases/_candidates/{cid}/`` (outside any ``vN``: invisible to readers);
2. :func:`validate_candidate` — Great Expectations suites on every video's tables and on the
   release tables; any failure raises with the failed expectations and nothing is published;
3. :func:`publish_candidate` — claim the next version atomically, write ``releases/vN/``
   (annotations, id-map PNGs, frames, splits, GX report, dataset card), then ``manifest.json``
   with the sha256 of every file, then ``_MANIFEST.json`` last: the release exists from that
   instant, and not before.

Layout of ``releases/vN/`` (YouTube-VIS style): ``annotations.json``, ``JPEGImages/{uid}/``,
``Annotations/{uid}/`` (uint16 id maps), ``splits.json``, ``gx_report.json`` with
``data_docs/index.html`` beside it (the Great Expectations Data Docs of the gate, rendered by
GX's own site builder), ``DATASET_CARD.md``, ``manifest.json``.

**One configuration per video.** A video labeled by several runs (a backfill with new
thresholds, say) has several validated configurations; a release takes, per video, *the newest
configuration that passed its quality suite* (the latest committed ``validate`` stage), unless a
``config_hash`` is asked for. The dataset card lists each video's configuration and why it was
chosen.

**Idempotent, also under a race** (issue 12, point 8). A candidate holding exactly the videos,
configurations and labels of the latest release is not published again: :func:`release` returns
that version with ``"unchanged": true`` (the CLI prints it and exits 0; the DAG's candidate task,
which calls :func:`prepare_candidate`, skips on :class:`Unchanged`). Publishing happens under one
lease (``leases/releases/publish.json``, tasks/storage/lease.py: an exclusive create locally, a
conditional put on S3/MinIO), and the publisher compares its candidate with the latest release
*again* under that lease, so of two ``release`` processes racing with the same change exactly
one publishes the next version and the other reports it. Every version is also claimed with a
create-if-absent ``releases/vN/.claim``.

**A published video stays published** (issue 12, point 1): a video of the latest release stays
in the next one as long as one of its configurations still has a committed ``validate`` stage,
whatever quarantine record appeared later; it leaves only when its labels were rebuilt and
failed their suite (a failed ``validate`` never commits, and a re-run removes the old commit
first). A quarantine record holds back a video that was not published only when it is newer than
the video's newest passing validation (a video labeled again and passing after its quarantine
was fixed is released).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import re
import tempfile
import uuid
from collections import Counter

from tasks import __version__, layout
from tasks.config import PipelineConfig
from tasks.errors import ObjectNotFound, PermanentError
from tasks.formats import ytvis
from tasks.quality import gate
from tasks.quality.tables import release_tables, video_tables
from tasks.stages.runner import output_key
from tasks.storage import ObjectStore
from tasks.storage.lease import LEASES, held_lease, lease_wait_s

log = logging.getLogger(__name__)

CANDIDATES = layout.RELEASES + "_candidates/"
DATA_DOCS = "data_docs/"  # the GX Data Docs site, beside gx_report.json
_VERSION = re.compile(r"^releases/v(\d+)/$")
PUBLISH_LEASE = f"{LEASES}releases/publish.json"
# A publisher copies every frame of every video (minutes on a large S3 release): a second
# `release` waits this many times the stage lease wait ($LEADER360V_LEASE_WAIT_S, default 60 s)
# for it, then reports the version it published instead of failing.
_PUBLISH_WAIT_FACTOR = 10


class NothingToRelease(PermanentError):
    """No video is ready: nothing validated, or everything already quarantined."""


class Unchanged(NothingToRelease):
    """The candidate holds exactly what release ``version`` holds: nothing new to publish."""

    def __init__(self, version: int, n_videos: int):
        super().__init__(
            f"release v{version} already holds exactly these {n_videos} video(s) with these configurations "
            f"and labels; nothing new to publish (latest: v{version})")
        self.version = version


def identity(rows: list[dict]) -> list[tuple]:
    """What makes two releases the same: each video with its configuration and labels (the
    labels' digest without the file's creation time; releases before issue 12 recorded only the
    file's sha256)."""
    return sorted((v["video_id"], v["run"], v.get("labels_sha256") or v.get("annotations_sha256")) for v in rows)


def labels_digest(doc: dict) -> str:
    """sha256 of a release document's labels: everything but ``info`` (whose ``date_created``
    changes on every export, so a rebuild with the very same labels is no change)."""
    body = {k: v for k, v in doc.items() if k != "info"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# -- 1. candidate ------------------------------------------------------------------------------
def ready_videos(store: ObjectStore, config_hash: str | None = None) -> list[dict]:
    """The videos a release takes, and the run of each: the one place that decides it.

    Every video with a committed validate stage (the newest run, or the one of ``config_hash``),
    except a video not in the latest release whose quarantine record is newer than that
    validation (the module docstring: a published video is never dropped by a quarantine).
    """
    latest = latest_release(store)
    published = {v["video_id"] for v in latest[1].get("videos", [])} if latest else set()
    out = []
    for vprefix in store.list_prefixes(layout.VIDEOS):
        video_id = vprefix[len(layout.VIDEOS):].rstrip("/")
        validated = []
        for rprefix in store.list_prefixes(vprefix + "runs/"):
            try:
                validated.append(store.get_json(rprefix + "validate/" + layout.MANIFEST))
            except ObjectNotFound:
                continue
        best, why = choose_run(validated, config_hash)
        if best is None:
            continue
        # every rule that keeps a validated video out of a release goes here, in this one function
        if _held_back(store, video_id, best, published):
            continue
        qa = store.get_json(layout.manifest_key(video_id, best["run"], "qa"))
        try:
            key = store.get_json(layout.source_key(video_id)).get("key")
        except ObjectNotFound:
            key = None
        out.append({"video_id": video_id, "key": key, "run": best["run"], "validated": best["finished"],
                    "why": why,
                    "annotations": output_key(store, qa, "annotations"),
                    "idmaps": output_key(store, qa, "idmaps"),
                    "frames": output_key(store, qa, "frames")})
    from tasks.review.approval import release_filter  # issue 15: only approved or unflagged videos

    return sorted(release_filter(store, out), key=lambda r: r["video_id"])


def _held_back(store: ObjectStore, video_id: str, best: dict, published: set[str]) -> bool:
    """Whether a quarantine record keeps this validated video out of the release."""
    try:
        q = store.get_json(layout.quarantine_key(video_id))
    except ObjectNotFound:
        return False
    except ValueError:  # an unreadable record holds nothing back that passed its suite
        log.warning("unreadable quarantine record of video %s; releasing its validated labels", video_id)
        return False
    if video_id in published:
        log.warning("video %s is quarantined (%s) but was published and still passes its suite (run %s): kept",
                    video_id, q.get("reason"), best["run"])
        return False
    if _time(q.get("time")) >= _time(best.get("finished")):
        log.warning("video %s left out: quarantined (%s) after its last passing validation", video_id, q.get("reason"))
        return True
    return False


def _time(text) -> _dt.datetime:
    try:
        t = _dt.datetime.fromisoformat(str(text))
    except ValueError:
        return _dt.datetime.min.replace(tzinfo=_dt.UTC)
    return t.replace(tzinfo=_dt.UTC) if t.tzinfo is None else t


def choose_run(validated: list[dict], config_hash: str | None = None) -> tuple[dict | None, str]:
    """The run of one video a release takes, and why, from its committed validate manifests.

    Rule: the requested ``config_hash`` if given; otherwise the newest configuration that passed
    its quality suite (latest ``finished`` of a committed validate stage; a suite that failed
    never commits). Ties (same second) go to the larger hash, so the choice is deterministic.
    """
    if config_hash is not None:
        hit = [m for m in validated if m["run"] == config_hash]
        return (hit[0], f"configuration {config_hash} was requested") if hit else (None, "")
    if not validated:
        return None, ""
    ordered = sorted(validated, key=lambda m: (m["finished"], m["run"]))
    best = ordered[-1]
    if len(ordered) == 1:
        return best, "its only configuration that passed its quality suite"
    others = ", ".join(m["run"] for m in ordered[:-1])
    return best, (f"the newest of {len(ordered)} configurations that passed its quality suite "
                  f"(validated {best['finished']}; older: {others})")


def split_of(video_uid: str, ratios: tuple[float, float, float]) -> str:
    """Deterministic split from the content hash: a video never changes split between releases."""
    u = int(hashlib.sha256(video_uid.encode()).hexdigest()[:8], 16) / 2**32
    if u < ratios[0]:
        return "train"
    return "val" if u < ratios[0] + ratios[1] else "test"


def latest_release(store: ObjectStore) -> tuple[int, dict] | None:
    """(version, manifest.json) of the newest published release, or None."""
    for v in reversed(published_versions(store)):
        p = layout.release_prefix(v)
        if store.exists(p + layout.MANIFEST):
            return v, store.get_json(p + "manifest.json")
    return None


def prepare_candidate(store: ObjectStore, config: PipelineConfig, *, config_hash: str | None = None) -> dict:
    ready = ready_videos(store, config_hash)
    if not ready:
        raise NothingToRelease(
            "no video is ready for a release: none has a committed validate stage"
            + (f" for run {config_hash}" if config_hash else "") + "; run the nightly DAG first"
        )
    raw_docs = [store.get_bytes(r["annotations"]) for r in ready]
    for r, data in zip(ready, raw_docs):
        r["annotations_sha256"] = hashlib.sha256(data).hexdigest()
        r["labels_sha256"] = labels_digest(json.loads(data))
    latest = latest_release(store)
    if latest is not None and identity(latest[1].get("videos", [])) == identity(ready):
        raise Unchanged(latest[0], len(ready))
    docs = [ytvis.load(json.loads(data)) for data in raw_docs]
    merged = ytvis.merge(docs)
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for v in merged["videos"]:
        splits[split_of(v["video_uid"], config.release.split_ratios)].append(v["video_uid"])
    cid = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    prefix = f"{CANDIDATES}{cid}/"
    store.put_json(prefix + "annotations.json", merged)
    store.put_json(prefix + "splits.json", splits)
    store.put_json(prefix + "videos.json", ready)
    log.info("release candidate %s: %d videos, %d objects", cid, len(ready), len(merged["annotations"]))
    return {"candidate": cid, "prefix": prefix, "uri": store.uri(prefix), "videos": len(ready),
            "objects": len(merged["annotations"]), "runs": sorted({r["run"] for r in ready})}


# -- 2. quality gate ---------------------------------------------------------------------------
def validate_candidate(store: ObjectStore, candidate: str, config: PipelineConfig) -> dict:
    from tasks.vocabulary import master

    prefix = f"{CANDIDATES}{candidate}/"
    doc = store.get_json(prefix + "annotations.json")
    splits = store.get_json(prefix + "splits.json")
    vocab_ids = master().ids()
    reports = []
    with tempfile.TemporaryDirectory(prefix="gx-docs-") as docs_dir:
        ctx = gate.context(docs_dir)  # one context: one Data Docs site for every suite of the release
        for v in doc["videos"]:
            sub = {"videos": [v], "categories": doc["categories"],
                   "annotations": [a for a in doc["annotations"] if a["video_id"] == v["id"]]}
            checks = gate.video_checks(int(v["length"]), vocab_ids, config.release.min_frame_coverage,
                                       config.release.min_frame_coverage_mostly)
            reports.append(gate.run_suite(f"video_{v['video_uid']}", video_tables(sub), checks, ctx))
        reports.append(gate.run_suite("release", release_tables(doc, splits),
                                      gate.release_checks(len(doc["videos"]), vocab_ids), ctx))
        docs = gate.build_data_docs(ctx, docs_dir)
        for rel in docs:
            store.put_file(f"{prefix}{DATA_DOCS}{rel}", f"{docs_dir}/{rel}")
    headline, failures = gate.describe(reports)
    report = {"candidate": candidate, "success": all(r["success"] for r in reports), "suites": reports,
              "summary": headline, "data_docs": f"{DATA_DOCS}index.html", "data_docs_files": docs,
              "validated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    store.put_json(prefix + "gx_report.json", report)
    log.info("release candidate %s: %s", candidate, headline)
    for line in failures:
        log.error("release candidate %s failed %s", candidate, line)
    gate.require_pass(reports)
    return {"candidate": candidate, "success": True, "suites": len(reports),
            "expectations": sum(t["evaluated"] for r in reports for t in r["tables"].values()),
            "passed": sum(t["successful"] for r in reports for t in r["tables"].values())}


# -- 3. publish --------------------------------------------------------------------------------
def published_versions(store: ObjectStore) -> list[int]:
    out = []
    for p in store.list_prefixes(layout.RELEASES):
        m = _VERSION.match(p)
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


def _claim_version(store: ObjectStore, candidate: str) -> int:
    n = max(published_versions(store), default=0) + 1
    while not store.put_if_absent(layout.release_prefix(n) + ".claim", candidate.encode()):
        n += 1
    return n


def publish_candidate(store: ObjectStore, candidate: str) -> dict:
    """Publish a validated candidate as the next version -- or, when the latest release already
    holds exactly its content (another ``release`` won the race), publish nothing and return
    that version with ``"unchanged": true``."""
    with held_lease(store, PUBLISH_LEASE, what="publishing a release",
                    wait_s=lease_wait_s() * _PUBLISH_WAIT_FACTOR) as lease:
        return _publish(store, candidate, lease)


def _publish(store: ObjectStore, candidate: str, lease) -> dict:
    prefix = f"{CANDIDATES}{candidate}/"
    try:
        report = store.get_json(prefix + "gx_report.json")
    except ObjectNotFound:
        raise PermanentError(f"candidate {candidate} was never validated; run the quality gate first") from None
    if not report.get("success"):
        raise PermanentError(f"candidate {candidate} failed its quality gate; it cannot be published")
    doc = store.get_json(prefix + "annotations.json")
    splits = store.get_json(prefix + "splits.json")
    videos = store.get_json(prefix + "videos.json")
    latest = latest_release(store)
    if latest is not None and identity(latest[1].get("videos", [])) == identity(videos):
        store.delete_prefix(prefix)
        log.warning("release v%d, published a moment ago by another release, already holds candidate %s's "
                    "content; nothing published (latest: v%d)", latest[0], candidate, latest[0])
        return release_summary(store, latest[0], unchanged=True)
    version = _claim_version(store, candidate)
    out = layout.release_prefix(version)
    files: dict[str, dict] = {}

    def put(rel: str, data: bytes) -> None:
        store.put_bytes(out + rel, data)
        files[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    def copy(src: str, rel: str) -> None:
        data = store.get_bytes(src)
        store.put_bytes(out + rel, data)
        files[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    try:
        for r, v in zip(videos, doc["videos"]):
            uid = v["video_uid"]
            for i in range(int(v["length"])):
                copy(layout.frame_key(r["frames"], i), f"JPEGImages/{uid}/{i:05d}.jpg")
                copy(f"{r['idmaps']}{i:05d}.png", f"Annotations/{uid}/{i:05d}.png")
        put("annotations.json", _json(doc))
        put("splits.json", _json(splits))
        put("gx_report.json", _json(report))
        for rel in report.get("data_docs_files", []):
            copy(f"{prefix}{DATA_DOCS}{rel}", f"{DATA_DOCS}{rel}")
        put("DATASET_CARD.md", dataset_card(version, doc, splits, videos, report).encode())
        manifest = {"version": version, "candidate": candidate, "code_version": __version__,
                    "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                    "runs": sorted({r["run"] for r in videos}), "objects": len(doc["annotations"]),
                    "videos": [{k: r.get(k) for k in ("video_id", "key", "run", "validated", "why", "annotations_sha256",
                                                   "labels_sha256")}
                               for r in videos],
                    "files": files}
        store.put_bytes(out + "manifest.json", _json(manifest))
        lease.check()  # a publisher that lost its lease must not make a version visible
        store.put_json(out + layout.MANIFEST, {"version": version, "manifest": "manifest.json",
                                               "files": len(files) + 1, "created": manifest["created"]})
    except BaseException:
        store.delete_prefix(out)  # nothing half-published stays
        raise
    store.delete(out + ".claim")
    store.put_json(layout.RELEASES + "latest.json", {"version": version, "prefix": out, "uri": store.uri(out)})
    store.delete_prefix(prefix)
    log.info("published release v%d at %s (%d files)", version, store.uri(out), len(files))
    return {"version": version, "prefix": out, "uri": store.uri(out), "files": len(files) + 1,
            "videos": len(doc["videos"]), "objects": len(doc["annotations"]),
            "runs": sorted({r["run"] for r in videos}),
            "data_docs": store.uri(out + DATA_DOCS + "index.html") if report.get("data_docs_files") else None,
            "unchanged": False}


def release_summary(store: ObjectStore, version: int, *, unchanged: bool) -> dict:
    """What :func:`publish_candidate` returns, for an already published ``version`` (same keys)."""
    out = layout.release_prefix(version)
    m = store.get_json(out + "manifest.json")
    objects = m.get("objects")
    if objects is None:  # manifests before issue 12 did not count them
        objects = len(store.get_json(out + "annotations.json")["annotations"])
    docs = out + DATA_DOCS + "index.html"
    return {"version": version, "prefix": out, "uri": store.uri(out), "files": len(m.get("files", {})) + 1,
            "videos": len(m.get("videos", [])), "objects": objects, "runs": m.get("runs", []),
            "data_docs": store.uri(docs) if "data_docs/index.html" in m.get("files", {}) else None,
            "unchanged": unchanged}


def release(store: ObjectStore, config: PipelineConfig, *, config_hash: str | None = None) -> dict:
    """Prepare, gate and publish. With nothing changed since the latest release, publish nothing
    and return that version (``"unchanged": true``): running it twice is running it once."""
    try:
        cand = prepare_candidate(store, config, config_hash=config_hash)
    except Unchanged as exc:
        log.warning("%s", exc)
        return release_summary(store, exc.version, unchanged=True)
    try:
        validate_candidate(store, cand["candidate"], config)
    except Exception:
        log.error("release candidate %s kept for inspection at %s", cand["candidate"], cand["uri"])
        raise
    return publish_candidate(store, cand["candidate"])


def _json(obj) -> bytes:
    return json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8")


def dataset_card(version: int, doc: dict, splits: dict, videos: list[dict], report: dict) -> str:
    names = {c["id"]: c["name"] for c in doc["categories"]}
    per_cat = Counter(names[a["category_id"]] for a in doc["annotations"])
    frames = sum(int(v["length"]) for v in doc["videos"])
    masks = sum(1 for a in doc["annotations"] for s in a["segmentations"] if s is not None)
    n_exp = sum(t["evaluated"] for r in report["suites"] for t in r["tables"].values())
    lines = [
        f"# Leader360V-style 360° video segmentation + tracking dataset — release v{version}",
        "",
        f"Created {_dt.datetime.now(_dt.UTC).date().isoformat()} by leader360v-pipeline {__version__}.",
        "",
        "## Contents",
        f"- {len(doc['videos'])} equirectangular (ERP, 2:1) videos, {frames} frames, "
        f"{len(doc['annotations'])} objects (tracks), {masks} masks.",
        "- Splits: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()) + " (deterministic by content hash).",
        f"- Pipeline runs (config hashes): {', '.join(sorted({r['run'] for r in videos}))}.",
        f"- Human-reviewed (approved at the human gate, or corrected and re-followed): "
        f"{sum(1 for r in videos if r.get('human_review'))} of {len(videos)} videos.",
        "",
        "## Configuration of each video",
        "One configuration per video: the newest configuration that passed its quality suite, unless a "
        "configuration hash was requested. `python -m tasks config` prints a configuration; each run's is "
        "stored at `videos/{video_id}/runs/{config_hash}/config.json`.",
        "",
        "| video uid | upload | config hash | validated | why this configuration |",
        "|---|---|---|---|---|",
        *[f"| {r['video_id']} | `{r.get('key') or '?'}` | {r['run']} | {r.get('validated', '?')} | "
          f"{r.get('why') or 'newest validated configuration'} |" for r in videos],
        "",
        "## Format",
        "`annotations.json` is YouTube-VIS (videos, categories, annotations with one COCO compressed RLE or null "
        "per frame, areas, bboxes) plus 360° extensions: `track_id`, `provenance`, seam-aware `wrap_bboxes` "
        "(x + w may exceed the width), `bfovs` ([clon, clat, fov_h, fov_v] degrees), `sphere_areas` (steradians), "
        "per video `video_uid` (content hash), `fps`, `config_hash`, `empty_frames`. "
        "`Annotations/{uid}/NNNNN.png` are uint16 id maps (0 = unlabeled, value = track_id); "
        "`JPEGImages/{uid}/NNNNN.jpg` the frames. Masks of one frame never overlap.",
        "",
        "## Classes",
        "| class | objects |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in per_cat.most_common()],
        "",
        "## Quality gate",
        f"{len(report['suites'])} Great Expectations suites, {n_exp} expectations, all passed "
        "(every frame labeled or explicitly empty, masks non-overlapping, areas positive and equal to the RLE "
        "areas, one class per track, classes in the vocabulary, coverage above its threshold, row counts equal "
        "frame counts, unique ids, splits). Details: `gx_report.json`; the same results as pages: "
        "`data_docs/index.html` (Great Expectations Data Docs).",
        "",
        "## Known limitations",
        f"- Objects labeled `unknown` ({per_cat.get('unknown', 0)} here) could not be named automatically and are "
        "flagged for human review.",
        "- Labels come from an automatic pipeline; see each annotation's `provenance` for how it was decided.",
        "- Check `manifest.json` (sha256 of every file) after download.",
    ]
    return "\n".join(lines) + "\n"
