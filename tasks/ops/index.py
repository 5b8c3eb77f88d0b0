"""One scan of the store for the ops dashboard, cached and invalidated by manifest time (issue 14).

The dashboard's overview must answer in under a second with 10,000 videos in the store; reading
every manifest takes several seconds (~90,000 files), so the scan keeps, per video, only what the
overview needs and the *modified time of every committed manifest* it saw:

* which stages of which run are committed (the manifest exists -- a half-written stage has none and
  is simply not there), with the manifest's modified time;
* the QA flag counts of each run's ``qa`` manifest (read once per manifest version);
* a stage's ``seconds``, read only for the newest ``durations_n`` manifests of each stage (the
  overview's p50/p95 window), and kept;
* the quarantine records (reason, time);
* the human gate's truth (tasks/review/approval.py): each ``reviews/{video_id}/{run}/decision.json``
  (listed once per scan, like the quarantine records, and re-read when its time changes: a decision
  counts as a manifest for invalidation) -- ``pending`` while the nightly DAG holds the run (with
  the limit it held it under), then the person's ``approved``/``rejected`` with who, when and why --,
  whether a CVAT task was exported there, and -- for a run whose status depends on it (flags, or
  more than one run) -- the run's ``review`` settings from its ``config.json`` (``revision_of``, and
  the ``gate_max_flags`` that runs recorded before the limit left the run hash still carry), read
  once: a run's configuration never changes, its id is the configuration's hash;
* the raw key of each video (``source.json``, written once at ingest, read once), so the pages
  that map Airflow's upload keys to videos need no store read.

A later scan stats the manifests again and re-reads only those whose modified time changed
(:meth:`OpsIndex.refresh`). What the pages need is condensed into a :class:`Summary` (a row per
video). The index and the summary are also written to local files (JSON, atomically), so a
restarted api-server worker answers from the summary at once and refreshes in the background
(:class:`OpsCache`): stale for at most ``refresh_s`` seconds, never slow.

The store is the only source of truth; this index is a cache of it that can be deleted any time.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tasks import layout
from tasks.errors import ObjectNotFound
from tasks.stages import STAGE_NAMES
from tasks.storage import LocalStore, ObjectStore

log = logging.getLogger(__name__)

INDEX_VERSION = 3   # 2: the human gate (decisions, review settings) and the raw key per video;
#                     3: pending gate records with their limit, the rejection's reason in the summary
# Overview statuses, in the order the plots stack them.
STATUSES = ("ready", "approved", "revised", "review", "rejected", "in_progress", "failed", "quarantined")
# What the pages call them (``review``: the human gate holds the video).
STATUS_LABELS = {"ready": "ready", "approved": "approved", "revised": "revised", "review": "waiting for review",
                 "rejected": "rejected (waiting for corrections)", "in_progress": "in progress", "failed": "failed",
                 "quarantined": "quarantined"}
REVIEWS = "reviews/"   # tasks/review/approval.py REVIEWS (kept in step by tests/tasks/ops/test_index.py)


@dataclass
class RunEntry:
    run: str
    # stage -> [manifest mtime (epoch s), seconds or None (not read yet / not recorded)]
    stages: dict[str, list] = field(default_factory=dict)
    qa_mtime: float | None = None   # the qa manifest version ``flags`` was read from
    flags: dict[str, int] | None = None
    # the run's ``review`` settings {"gate_max_flags", "revision_of"} (None: not read / no config.json)
    review_cfg: dict | None = None
    # reviews/{video}/{run}/decision.json: {"decision" (pending/approved/rejected), "by", "at", "note",
    # "gate_max_flags", "mtime"}, None: no record
    decision: dict | None = None
    cvat: bool = False              # a CVAT task was exported for the gate (reviews/.../cvat/annotations.xml)

    @property
    def flag_total(self) -> int:
        return sum((self.flags or {}).values())

    def gate_status(self) -> str:
        """The human gate's view of a validated run, as tasks/review/approval.py ``human_review``
        decides it: ``revised`` (a person's corrections), ``approved``/``rejected`` (decision.json),
        ``review`` (held: a pending record, or more flags than the ``gate_max_flags`` of a run
        recorded while that limit named the run), else ``ready``."""
        rc = self.review_cfg or {}
        if rc.get("revision_of"):
            return "revised"
        d = (self.decision or {}).get("decision")
        if d in ("approved", "rejected"):
            return d
        if d == "pending":
            return "review"
        limit = rc.get("gate_max_flags")
        return "review" if limit is not None and self.flag_total > limit else "ready"

    @property
    def gate_limit(self) -> int | None:
        """The limit the gate held the run under (its record), else the run's legacy limit."""
        held = (self.decision or {}).get("gate_max_flags")
        return held if held is not None else (self.review_cfg or {}).get("gate_max_flags")

    @property
    def rejection(self) -> str | None:
        """Why a person rejected the run (their comment, or who and when), for the pages."""
        d = self.decision or {}
        if d.get("decision") != "rejected":
            return None
        return d.get("note") or f"no comment (by {d.get('by')} at {d.get('at')})"

    @property
    def latest(self) -> float:
        return max((v[0] for v in self.stages.values()), default=0.0)

    @property
    def validated(self) -> bool:
        return "validate" in self.stages


@dataclass
class VideoEntry:
    video_id: str
    runs: dict[str, RunEntry] = field(default_factory=dict)
    quarantine: dict | None = None   # {"reason", "message", "time", "mtime"}
    key: str | None = None           # the raw upload's key (source.json)

    @property
    def newest_run(self) -> RunEntry | None:
        return max(self.runs.values(), key=lambda r: (r.latest, r.run), default=None)

    @property
    def last_activity(self) -> float:
        times = [r.latest for r in self.runs.values()]
        times += [r.decision["mtime"] for r in self.runs.values() if r.decision and r.decision.get("mtime")]
        if self.quarantine:
            times.append(self.quarantine["mtime"])
        return max(times, default=0.0)

    def status(self) -> str:
        """``quarantined`` (a record exists), ``in_progress`` (the newest run is not validated yet),
        else the human gate's status of the newest run (:meth:`RunEntry.gate_status`): ``review``
        only while the gate holds it. ``failed`` comes from Airflow, not from the store: a failed
        stage leaves no manifest (tasks/ops/views.py ``overview``)."""
        if self.quarantine:
            return "quarantined"
        run = self.newest_run
        if run is None or not run.validated:
            return "in_progress"
        return run.gate_status()


def _is_video_id(v: str) -> bool:
    try:
        layout.check_video_id(v)
    except ValueError:
        return False
    return True


def _epoch(dt: _dt.datetime) -> float:
    return dt.timestamp()


class OpsIndex:
    """Per-video entries of one store, refreshed by manifest time."""

    def __init__(self, store: ObjectStore, *, durations_n: int = 200, workers: int = 16):
        self.store = store
        self.durations_n = durations_n
        self.workers = workers
        self.videos: dict[str, VideoEntry] = {}
        self.scanned_at: float | None = None     # epoch s of the last completed scan
        self.scan_seconds: float | None = None
        self.reads = 0                            # manifests read by the last scan

    # -- the scan ------------------------------------------------------------------------------
    def _manifest_times(self, video_id: str) -> dict[str, dict[str, float]]:
        """run -> stage -> manifest mtime, for every committed manifest of the video."""
        vprefix = layout.video_prefix(video_id)
        out: dict[str, dict[str, float]] = {}
        if isinstance(self.store, LocalStore):
            # the run folders and one stat per stage, straight from the directory (the run folder also
            # holds every id map, which a listing would walk); 4x faster than the generic calls
            try:
                runs = [e for e in os.scandir(self.store.path(vprefix + "runs")) if e.is_dir()]
            except (FileNotFoundError, NotADirectoryError):
                return out
            for e in runs:
                times = {}
                for stage in STAGE_NAMES:
                    try:
                        times[stage] = os.stat(f"{e.path}/{stage}/{layout.MANIFEST}").st_mtime
                    except OSError:
                        pass
                if times:
                    out[e.name] = times
            return out
        for rprefix in self.store.list_prefixes(vprefix + "runs/"):
            run = rprefix.rstrip("/").rsplit("/", 1)[-1]
            times: dict[str, float] = {}
            # one listing per run on S3 (a HEAD per stage would be 9 round trips)
            for info in self.store.list(rprefix):
                rest = info.key[len(rprefix):].split("/")
                if len(rest) == 2 and rest[1] == layout.MANIFEST and rest[0] in STAGE_NAMES:
                    times[rest[0]] = _epoch(info.modified)
            if times:
                out[run] = times
        return out

    def _read_manifest(self, video_id: str, run: str, stage: str) -> dict | None:
        try:
            m = self.store.get_json(layout.manifest_key(video_id, run, stage))
        except (ObjectNotFound, ValueError) as exc:  # deleted meanwhile, or not JSON
            log.warning("manifest %s/%s/%s unreadable: %s", video_id, run, stage, exc)
            return None
        self.reads += 1
        return m if isinstance(m, dict) else None

    @staticmethod
    def _seconds(m: dict | None) -> float | None:
        """A stage's duration; manifests of older pipeline versions may lack ``seconds``."""
        if not m:
            return None
        s = m.get("seconds")
        if isinstance(s, int | float):
            return float(s)
        try:
            return (_dt.datetime.fromisoformat(m["finished"]) - _dt.datetime.fromisoformat(m["started"])).total_seconds()
        except (KeyError, TypeError, ValueError):
            return None

    def _source_key(self, video_id: str) -> str | None:
        try:
            src = self.store.get_json(layout.source_key(video_id))
        except (ObjectNotFound, ValueError):
            return None   # not ingested (a quarantined upload), or unreadable: tried again next scan
        self.reads += 1
        key = src.get("key") if isinstance(src, dict) else None
        return key if isinstance(key, str) else None

    def _review_cfg(self, video_id: str, run: str) -> dict | None:
        try:
            cfg = self.store.get_json(layout.run_config_key(video_id, run))
        except ObjectNotFound:
            # config.json is written before a run's first manifest, so a validated run without one
            # (an older pipeline's) never gets one: no gate (approval.needs_review cannot load it
            # either), and kept, so later scans do not try again
            return {}
        except ValueError as exc:
            log.warning("run config of %s/%s unreadable: %s", video_id, run, exc)
            return {}
        self.reads += 1
        rc = (cfg.get("review") if isinstance(cfg, dict) else None) or {}
        return {"gate_max_flags": rc.get("gate_max_flags"), "revision_of": rc.get("revision_of")}

    def _update_video(self, video_id: str, quarantine: dict | None,
                      reviews: dict[str, dict] | None = None) -> VideoEntry:
        old = self.videos.get(video_id)
        reviews = reviews or {}
        entry = VideoEntry(video_id, quarantine=quarantine, key=old.key if old and old.key else None)
        if entry.key is None:
            entry.key = self._source_key(video_id)
        for run, times in self._manifest_times(video_id).items():
            prev = old.runs.get(run) if old else None
            r = RunEntry(run, review_cfg=prev.review_cfg if prev else None)
            rv = reviews.get(run) or {}
            r.decision, r.cvat = rv.get("decision"), bool(rv.get("cvat"))
            for stage, mtime in times.items():
                kept = prev.stages.get(stage) if prev else None
                r.stages[stage] = [mtime, kept[1] if kept and kept[0] == mtime else None]
            qa_t = times.get("qa")
            if qa_t is not None:
                if prev and prev.qa_mtime == qa_t:
                    r.qa_mtime, r.flags = prev.qa_mtime, prev.flags
                else:
                    m = self._read_manifest(video_id, run, "qa")
                    flags = ((m or {}).get("stats") or {}).get("flags")
                    r.qa_mtime = qa_t
                    r.flags = {str(k): int(v) for k, v in flags.items()} if isinstance(flags, dict) else {}
                    if r.stages["qa"][1] is None:
                        r.stages["qa"][1] = self._seconds(m)
            entry.runs[run] = r
        # the review settings matter only where they can change the status: a run with flags (the
        # gate's limit) or a video with several runs (a revision is a second run); 0 flags and one
        # run is ``ready`` whatever the settings (gate_max_flags >= 0), so most videos cost no read
        for r in entry.runs.values():
            if r.review_cfg is None and r.validated and (r.flag_total > 0 or len(entry.runs) > 1):
                r.review_cfg = self._review_cfg(video_id, r.run)
        return entry

    def _reviews(self) -> dict[str, dict[str, dict]]:
        """video -> run -> {"decision": {...} | None, "cvat": bool}, from one listing of ``reviews/``."""
        out: dict[str, dict[str, dict]] = {}
        for info in self.store.list(REVIEWS):
            parts = info.key[len(REVIEWS):].split("/")
            if len(parts) < 3:
                continue
            vid, run, rest = parts[0], parts[1], "/".join(parts[2:])
            rv = out.setdefault(vid, {}).setdefault(run, {"decision": None, "cvat": False})
            if rest == "cvat/annotations.xml":
                rv["cvat"] = True
            elif rest == "decision.json":
                mtime = _epoch(info.modified)
                old_v = self.videos.get(vid)
                old_r = old_v.runs.get(run) if old_v else None
                if old_r and old_r.decision and old_r.decision.get("mtime") == mtime:
                    rv["decision"] = old_r.decision
                    continue
                try:
                    rec = self.store.get_json(info.key)
                    self.reads += 1
                except (ObjectNotFound, ValueError) as exc:
                    log.warning("review decision %s unreadable: %s", info.key, exc)
                    continue   # no readable decision: the gate still holds the run
                if isinstance(rec, dict):
                    rv["decision"] = {"decision": rec.get("decision"), "by": rec.get("by"), "at": rec.get("at"),
                                      "note": rec.get("note"), "gate_max_flags": rec.get("gate_max_flags"),
                                      "mtime": mtime}
        return out

    def _quarantine(self) -> dict[str, dict]:
        out = {}
        for info in self.store.list(layout.QUARANTINE):
            if not info.key.endswith(".json"):
                continue
            vid = info.key[len(layout.QUARANTINE):-len(".json")]
            mtime = _epoch(info.modified)
            old = self.videos.get(vid)
            if old and old.quarantine and old.quarantine["mtime"] == mtime:
                out[vid] = old.quarantine
                continue
            try:
                rec = self.store.get_json(info.key)
                self.reads += 1
            except (ObjectNotFound, ValueError):
                rec = {"reason": "unreadable", "message": f"{info.key} cannot be read"}
            if not isinstance(rec, dict):
                rec = {"reason": "unreadable", "message": f"{info.key} is not a JSON object"}
            out[vid] = {"reason": str(rec.get("reason", "unknown")), "message": str(rec.get("message", "")),
                        "time": rec.get("time"), "key": rec.get("key"), "mtime": mtime}
        return out

    def refresh(self) -> OpsIndex:
        """Scan the store; re-read only manifests whose modified time changed since the last scan."""
        t0 = time.perf_counter()
        self.reads = 0
        quarantine = self._quarantine()
        reviews = self._reviews()
        ids = [p[len(layout.VIDEOS):].rstrip("/") for p in self.store.list_prefixes(layout.VIDEOS)]
        ids = [v for v in ids if _is_video_id(v)]   # anything else is not a video folder
        seen = set(ids)
        ids += [v for v in quarantine if v not in seen and _is_video_id(v)]
        with ThreadPoolExecutor(self.workers) as pool:
            entries = list(pool.map(lambda v: self._update_video(v, quarantine.get(v), reviews.get(v)), ids))
        videos = {e.video_id: e for e in entries}
        self._fill_durations(videos)
        self.videos = videos   # one reference swap: readers see the old or the new index, whole
        self.scanned_at = time.time()
        self.scan_seconds = time.perf_counter() - t0
        log.info("ops index of %s: %d videos, %d manifests read, %.2f s", self.store.uri(), len(self.videos),
                 self.reads, self.scan_seconds)
        return self

    def _fill_durations(self, videos: dict[str, VideoEntry]) -> None:
        """Read ``seconds`` of the newest ``durations_n`` manifests of each stage (once each)."""
        todo = []
        for stage in STAGE_NAMES:
            newest = sorted(((r.stages[stage][0], v.video_id, r) for v in videos.values()
                             for r in v.runs.values() if stage in r.stages), key=lambda t: t[0], reverse=True)
            todo += [(vid, r, stage) for _, vid, r in newest[: self.durations_n] if r.stages[stage][1] is None]

        def read(item):
            vid, r, stage = item
            r.stages[stage][1] = self._seconds(self._read_manifest(vid, r.run, stage))

        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(read, todo))

    # -- persistence ---------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"scanned_at": self.scanned_at,
                "scan_seconds": self.scan_seconds,
                "videos": {vid: {"q": e.quarantine, "k": e.key,
                                 "runs": {run: {"s": r.stages, "qa": r.qa_mtime, "f": r.flags, "rc": r.review_cfg,
                                                "d": r.decision, "cv": r.cvat}
                                          for run, r in e.runs.items()}}
                           for vid, e in self.videos.items()}}

    def load_json(self, doc: dict) -> bool:
        self.videos = {vid: VideoEntry(vid, quarantine=v["q"], key=v.get("k"),
                                       runs={run: RunEntry(run, stages=r["s"], qa_mtime=r["qa"], flags=r["f"],
                                                           review_cfg=r.get("rc"), decision=r.get("d"),
                                                           cvat=bool(r.get("cv")))
                                             for run, r in v["runs"].items()})
                       for vid, v in doc["videos"].items()}
        self.scanned_at, self.scan_seconds = doc.get("scanned_at"), doc.get("scan_seconds")
        return True


@dataclass
class Summary:
    """What the pages need from one scan, small enough to load in milliseconds: one row per video
    ``[video_id, status, last activity (epoch s), newest run, stages committed, flags, reason (the
    quarantine's, or a rejection's comment), raw key]`` and the newest ``durations_n`` seconds of
    each stage."""

    rows: list[list]
    durations: dict[str, list[float]]
    durations_n: int
    scanned_at: float | None
    scan_seconds: float | None

    def to_json(self) -> dict:
        return {"rows": self.rows, "durations": self.durations, "durations_n": self.durations_n,
                "scanned_at": self.scanned_at, "scan_seconds": self.scan_seconds}

    @classmethod
    def from_json(cls, d: dict) -> Summary:
        return cls(d["rows"], d["durations"], d["durations_n"], d["scanned_at"], d["scan_seconds"])

    def status_of(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.rows}

    def video_of_key(self) -> dict[str, str]:
        """raw upload key -> video id (the first upload of each video's content)."""
        return {r[7]: r[0] for r in self.rows if r[7]}


def summarize(index: OpsIndex) -> Summary:
    rows = []
    for v in index.videos.values():
        run = v.newest_run
        status = v.status()
        reason = v.quarantine["reason"] if v.quarantine else (run.rejection if status == "rejected" else None)
        rows.append([v.video_id, status, v.last_activity, run.run if run else None,
                     len(run.stages) if run else 0, dict(run.flags or {}) if run else {}, reason, v.key])
    rows.sort(key=lambda r: r[2], reverse=True)
    durations = {}
    for stage in STAGE_NAMES:
        newest = sorted(((r.stages[stage][0], r.stages[stage][1]) for v in index.videos.values()
                         for r in v.runs.values() if stage in r.stages and r.stages[stage][1] is not None),
                        reverse=True)[: index.durations_n]
        durations[stage] = [sec for _, sec in newest]
    return Summary(rows, durations, index.durations_n, index.scanned_at, index.scan_seconds)


def index_path(cache_dir: str | os.PathLike, store: ObjectStore, kind: str = "index") -> Path:
    """One index file (and one summary file) per store: several stores may share a cache folder."""
    return Path(cache_dir) / f"ops-{kind}-{hashlib.sha256(store.uri().encode()).hexdigest()[:16]}.json"


class OpsCache:
    """The scan of one store for a long-lived process (the api-server).

    Pages read the :class:`Summary` of the last scan: from memory, else from the summary file a
    previous process left (a restarted worker answers in milliseconds), else -- only the very
    first time a store is seen -- from a scan made now. :meth:`refresh_if_stale` starts a scan in a
    background thread once the summary is ``refresh_s`` old (the app calls it after sending the
    page); the scan re-reads only manifests whose time changed (the full index file is loaded
    first). A scan that fails (store unreachable) keeps the last summary and records the error,
    which the dashboard shows as a banner (:attr:`error`).
    """

    def __init__(self, store: ObjectStore, *, cache_dir: str | os.PathLike | None = None, refresh_s: float = 30.0,
                 durations_n: int = 200, workers: int | None = None):
        # a local store is stat calls (the GIL, not latency, is the limit): few threads; S3: many
        workers = workers or (4 if isinstance(store, LocalStore) else 16)
        self.index = OpsIndex(store, durations_n=durations_n, workers=workers)
        self.summary: Summary | None = None
        self.refresh_s = refresh_s
        self.cache_dir = cache_dir
        self.error: str | None = None
        self.generation = 0          # bumped after each new summary (aggregates are cached per generation)
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()
        self._refreshing = False
        self._summary_file_read = False
        self._index_loaded = False

    def _path(self, kind: str) -> Path | None:
        return index_path(self.cache_dir, self.index.store, kind) if self.cache_dir is not None else None

    def _read(self, kind: str) -> dict | None:
        path = self._path(kind)
        if path is None or not path.is_file():
            return None
        try:
            doc = json.loads(path.read_text())
            if doc.get("version") == INDEX_VERSION and doc.get("store") == self.index.store.uri():
                return doc
        except (OSError, ValueError) as exc:   # a damaged cache is rebuilt
            log.warning("ops cache file %s unreadable (%s); rescanning", path, exc)
        return None

    def _write(self, kind: str, doc: dict) -> None:
        path = self._path(kind)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps({"version": INDEX_VERSION, "store": self.index.store.uri(), **doc},
                                      separators=(",", ":")))
            os.replace(tmp, path)
        except OSError as exc:   # a read-only cache folder costs speed, not correctness
            log.warning("cannot write ops cache file %s: %s", path, exc)

    def _scan(self) -> None:
        with self._scan_lock:
            try:
                if not self._index_loaded:
                    self._index_loaded = True
                    doc = self._read("index")
                    try:
                        if doc is not None:
                            self.index.load_json(doc)
                    except (KeyError, TypeError, ValueError) as exc:
                        log.warning("ops index file unusable (%s); full rescan", exc)
                self.index.refresh()
            except Exception as exc:   # noqa: BLE001 -- any store failure becomes the banner, and is logged
                log.exception("scan of %s failed", self.index.store.uri())
                self.error = f"{type(exc).__name__}: {exc}"
            else:
                self.error = None
                self.summary = summarize(self.index)
                self.generation += 1
                self._write("index", self.index.to_json())
                self._write("summary", self.summary.to_json())
            finally:
                self._refreshing = False

    def get_summary(self) -> Summary | None:
        """The last scan's summary (None only when the store was never scanned successfully)."""
        with self._lock:
            if self.summary is None and not self._summary_file_read:
                self._summary_file_read = True
                doc = self._read("summary")
                if doc is not None:
                    try:
                        self.summary = Summary.from_json(doc)
                        self.generation += 1
                    except (KeyError, TypeError) as exc:
                        log.warning("ops summary file unusable (%s)", exc)
            if self.summary is None:
                self._refreshing = True
                self._scan()
            return self.summary

    def refresh_if_stale(self) -> bool:
        """Start a background scan if the summary is ``refresh_s`` old; True if one was started."""
        with self._lock:
            at = self.summary.scanned_at if self.summary else None
            if self._refreshing or (at is not None and time.time() - at <= self.refresh_s):
                return False
            self._refreshing = True
        threading.Thread(target=self._scan, name="ops-index-refresh", daemon=True).start()
        return True

    def refresh_now(self) -> Summary | None:
        """Scan now and wait (after an action the user expects to see, e.g. a released quarantine)."""
        self._refreshing = True
        self._scan()
        return self.summary

    def wait(self, timeout: float = 60.0) -> None:
        """Wait for a running background scan (tests, benchmarks)."""
        deadline = time.time() + timeout
        while self._refreshing and time.time() < deadline:
            time.sleep(0.02)
