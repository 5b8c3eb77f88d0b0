"""The ops dashboard: a FastAPI app the ``leader360v`` plugin mounts in the api-server (issue 14).

Pages (HTML rendered here, plots as inline SVG, every asset served by this app):

``/``                              overview: videos per day by status, stage p50/p95, failures by
                                   reason, GPU pool usage, latest releases
``/videos?status=``                the newest videos, by status
``/videos/{id}?run=``              one video: preview player, id-map thumbnails, coverage and camera
                                   plots, review flags with crops, stage timings, config hash,
                                   Airflow task links, raw upload link
``/quarantine``                    rejected uploads; POST ``/quarantine/{id}/release`` lets one back in
``/releases/{n}``                  dataset card, suite result, class histogram, solid-angle areas,
                                   per-video counts, checksums, changes since the previous release
``/releases/{n}/data_docs/...``    the release's Great Expectations Data Docs, CDN links rewritten
                                   to the vendored copies under ``/static/vendor/``
``/runs/{dag_id}/{run_id}``        a DAG run's videos (nightly) or its release (release DAG)
``/tasks/{dag}/{run}/{task}/{i}``  a stage task instance -> that video's page

Every route depends on Airflow's authorization (:mod:`.auth`). The store is read through
:mod:`tasks.ops` (one cached scan); Airflow's states through :mod:`.airflow_state`.
"""

from __future__ import annotations

import datetime as _dt
import logging
import mimetypes
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import BackgroundTasks, Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from leader360v_airflow.dashboard import auth, svg
from leader360v_airflow.dashboard.airflow_state import AirflowDB
from tasks import layout
from tasks.errors import ObjectNotFound
from tasks.ops import views
from tasks.ops.index import STATUS_LABELS, STATUSES, OpsCache
from tasks.review.approval import REVIEWS
from tasks.stages import STAGE_NAMES

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
URL_PREFIX = "/leader360v"
# Where an object may be served from: pipeline data only (never leases/, audit/, models/ ...).
# reviews/: the human gate's CVAT export and comments the video page links (tasks/review/approval.py)
SERVABLE = (layout.VIDEOS, layout.RELEASES, layout.RAW, REVIEWS)
# GX Data Docs' CDN links -> vendored copies (static/vendor/LICENSES.md); other CDN tags are dropped.
_VENDOR = {
    "bootstrap.min.css": "bootstrap.min.css", "bootstrap.min.js": "bootstrap.min.js",
    "jquery-3.7.1.min.js": "jquery.min.js", "popper.min.js": "popper.min.js",
    "bootstrap-table.min.css": "bootstrap-table.min.css", "bootstrap-table.min.js": "bootstrap-table.min.js",
    "bootstrap-table-filter-control.min.js": "bootstrap-table-filter-control.min.js",
    "bootstrap-table-filter-control.css": "bootstrap-table-filter-control.min.css",
    "bootstrap-table-filter-control.min.css": "bootstrap-table-filter-control.min.css",
    "bootstrap-datepicker.min.js": "bootstrap-datepicker.min.js",
    "bootstrap-datepicker.min.css": "bootstrap-datepicker.min.css",
    "all.min.css": "fontawesome/css/all.min.css",   # font-awesome 6.6.0: the pass/fail icons
}
_CDN_ATTR = re.compile(r'''(?P<attr>src|href)=(?P<q>["'])(?P<url>https?://[^"']+)(?P=q)''')
_CDN_TAG = re.compile(r'''<(script|link|img)\b[^>]*?(?:src|href)=["']https?://[^"']+["'][^>]*?>(?:\s*</script>)?''',
                      re.IGNORECASE)
_TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.IGNORECASE)
_SRI = re.compile(r"""\s(?:integrity|crossorigin)(?:=(?:"[^"]*"|'[^']*'|[^\s>]+))?""", re.IGNORECASE)
_CDN_CSS_URL = re.compile(r'''url\(\s*["']?https?://[^)]*\)''')


def rewrite_data_docs(html: str, vendor_url: str) -> str:
    """GX's page with every CDN link replaced by the vendored copy, or its tag removed (nothing of
    a Data Docs page is fetched from outside the cluster). ``vendor_url``: where /static/vendor is."""
    def attr(m):
        name = m.group("url").split("?", 1)[0].rsplit("/", 1)[-1]
        if name in _VENDOR:
            return f'{m.group("attr")}={m.group("q")}{vendor_url}/{_VENDOR[name]}{m.group("q")}'
        return m.group(0)

    html = _CDN_ATTR.sub(attr, html)

    def local_tag(m):
        # the CDN's subresource-integrity hash is of the CDN's bytes; the vendored copy is served by
        # this app, same origin, behind the same login
        tag = m.group(0)
        return _SRI.sub("", tag) if f"{vendor_url}/" in tag else tag

    html = _TAG.sub(local_tag, html)
    html = _CDN_TAG.sub("", html)
    html = _CDN_CSS_URL.sub("none", html)   # the logo behind the nav bar (inline style)
    # anchors to outside pages stay links, but no resource of the page is external any more
    return html


class Dashboard:
    """State shared by the routes: the store (opened on first use), its cached scan, Airflow."""

    def __init__(self, store=None, store_factory=None, airflow=None, cache_dir=None, refresh_s: float = 30.0,
                 days: int = 14):
        self._store = store
        self._store_factory = store_factory
        self.airflow = airflow if airflow is not None else AirflowDB()
        self.cache_dir = cache_dir
        self.refresh_s = refresh_s
        self.days = days
        self._cache: OpsCache | None = None
        self._lock = threading.Lock()
        self._overview_cache: tuple | None = None

    def store(self):
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = (self._store_factory or _default_store)()
        return self._store

    def cache(self) -> OpsCache:
        if self._cache is None:
            with self._lock:
                if self._cache is None:
                    self._cache = OpsCache(self.store(), cache_dir=self.cache_dir, refresh_s=self.refresh_s)
        return self._cache


def _default_store():
    from leader360v_airflow import settings

    return settings.store()


def _default_cache_dir() -> str:
    home = os.environ.get("AIRFLOW_HOME")
    return os.path.join(home, "leader360v-ops-cache") if home else os.path.join(tempfile.gettempdir(), "leader360v-ops")


class StoreUnavailable(Exception):
    """The store could not be read; pages show a banner instead of a traceback."""


def create_app(*, store=None, store_factory=None, airflow=None, cache_dir=None, refresh_s: float = 30.0,
               authorize: bool = True) -> FastAPI:
    """The dashboard app. ``authorize=False`` drops the auth dependencies (benchmarks only; tests
    override them with ``app.dependency_overrides`` instead)."""
    dash = Dashboard(store=store, store_factory=store_factory, airflow=airflow,
                     cache_dir=cache_dir if cache_dir is not None else _default_cache_dir(), refresh_s=refresh_s)
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape(["html"]))
    env.globals.update(svg=svg, statuses=STATUSES, status_labels=STATUS_LABELS, stages=STAGE_NAMES, quote=quote)

    def dep(d):
        return [Depends(d)] if authorize else []

    app = FastAPI(title="leader360v ops dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.dashboard = dash

    def base(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    def ui_base(request: Request) -> str:
        b = base(request)
        return b[: -len(URL_PREFIX)] if b.endswith(URL_PREFIX) else ""

    def render(request: Request, name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        cache = dash._cache
        ctx.setdefault("banner", cache.error if cache is not None else None)
        html = env.get_template(name).render(base=base(request), ui=ui_base(request), request=request,
                                             airflow_available=getattr(dash.airflow, "available", False), **ctx)
        return HTMLResponse(html, status_code=status_code)

    def store_or_banner():
        try:
            return dash.store()
        except Exception as exc:  # noqa: BLE001 -- a store that cannot be opened is the banner's message
            raise StoreUnavailable(f"the store cannot be opened: {type(exc).__name__}: {exc}") from exc

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(request: Request, exc: StoreUnavailable):
        return render(request, "error.html", 503, title="Store unavailable", banner=str(exc),
                      message="The pipeline's object store cannot be read right now. The Airflow UI and the pipeline's "
                              "runs are not affected; this page shows data again as soon as the store answers.")

    @app.exception_handler(views.VideoNotFound)
    async def _no_video(request: Request, exc: views.VideoNotFound):
        return render(request, "error.html", 404, title="No such video", message=str(exc))

    @app.exception_handler(views.ReleaseNotFound)
    async def _no_release(request: Request, exc: views.ReleaseNotFound):
        return render(request, "error.html", 404, title="No such release", message=str(exc))

    def guarded(fn, *a, passthrough: tuple = (), **k):
        """Call a store reader; a store failure becomes the banner page, not a traceback."""
        try:
            return fn(*a, **k)
        except (views.VideoNotFound, views.ReleaseNotFound, HTTPException, *passthrough):
            raise
        except Exception as exc:  # noqa: BLE001 -- S3 errors, connection errors, permission errors
            log.exception("store read failed")
            raise StoreUnavailable(f"reading the store failed: {type(exc).__name__}: {exc}") from exc

    def scanned_index(background: BackgroundTasks):
        """The summary of the store's last scan (a store never scanned successfully is the banner
        page); a stale one is refreshed in the background after the page is sent."""
        cache = dash.cache()
        summary = guarded(cache.get_summary)
        if summary is None:
            raise StoreUnavailable(cache.error or "the store has not been scanned yet")
        background.add_task(cache.refresh_if_stale)
        return summary

    # -- overview -------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, dependencies=dep(auth.read_pipeline))
    def overview(request: Request, background: BackgroundTasks):
        store = store_or_banner()
        cache = dash.cache()
        index = scanned_index(background)
        now = _dt.datetime.now(_dt.UTC)
        since = now - _dt.timedelta(days=dash.days)
        failed = _airflow(dash.airflow.failed_uploads, [], since)
        key = (cache.generation, tuple(sorted((f["key"], f["stage"]) for f in failed)), now.date())
        if dash._overview_cache and dash._overview_cache[0] == key:
            data = dash._overview_cache[1]
        else:
            pending = views.unfinished_video_ids(index)
            keys = views.source_keys(index, pending) if failed and pending else {}
            data = views.overview(index, days=dash.days, failed_uploads=failed, video_keys=keys, now=now)
            dash._overview_cache = (key, data)
        pools = _airflow(dash.airflow.pools, [])
        banner = cache.error
        try:   # the overview still shows the last scan when the store stops answering
            rel = views.releases(store)
        except Exception as exc:  # noqa: BLE001 -- shown in the banner, logged
            log.exception("reading the releases failed")
            rel, banner = [], banner or f"reading the releases failed: {type(exc).__name__}: {exc}"
        series = {s: [data["per_day"][d][s] for d in data["days"]] for s in STATUSES}
        drows = [(s, data["durations"][s]["p50"], data["durations"][s]["p95"], data["durations"][s]["n"])
                 for s in STAGE_NAMES]
        return render(request, "overview.html", o=data, pools=pools, releases=rel, index=index, series=series,
                      drows=drows, banner=banner,
                      scanned=_ago(index.scanned_at), title="Overview")

    @app.get("/videos", response_class=HTMLResponse, dependencies=dep(auth.read_pipeline))
    def videos(request: Request, background: BackgroundTasks, status: str | None = Query(None),
               limit: int = Query(200, ge=1, le=5000)):
        if status is not None and status not in STATUSES:
            raise HTTPException(400, f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        store_or_banner()
        index = scanned_index(background)
        return render(request, "videos.html", rows=views.videos_table(index, status=status, limit=limit),
                      status=status, title="Videos", scanned=_ago(index.scanned_at))

    @app.get("/videos/{video_id}", response_class=HTMLResponse, dependencies=dep(auth.read_pipeline))
    def video(request: Request, video_id: str, run: str | None = Query(None)):
        store = store_or_banner()
        v = guarded(views.video_detail, store, video_id, run)
        key = (v["source"] or {}).get("key") or ((v["quarantine"] or {}).get("key"))
        tasks = _airflow(dash.airflow.stage_tasks, [], key) if key else []
        raw = None
        if key:
            presign = getattr(store, "presigned_get", None)
            raw = (guarded(presign, key, _dt.timedelta(hours=2)) if callable(presign)
                   else f"{base(request)}/object/{quote(key)}")
        timing_items = [(t["stage"], t["seconds"]) for t in v["timings"] if t["seconds"] is not None]
        return render(request, "video.html", v=v, key=key, tasks=tasks, raw=raw, timing_items=timing_items,
                      title=f"Video {video_id}")

    @app.get("/videos/{video_id}/idmap/{run}/{frame}.png", dependencies=dep(auth.read_pipeline))
    def idmap_thumbnail(video_id: str, run: str, frame: int, w: int = Query(192, ge=16, le=1024)):
        """An id map as a colour thumbnail (each track id its own colour; 0 = unlabeled, black)."""
        store = store_or_banner()
        try:
            layout.check_video_id(video_id)
            layout.check_run_id(run)
        except ValueError as exc:
            raise HTTPException(404, str(exc)) from None
        qa = guarded(_manifest, store, video_id, run, "qa")
        if qa is None or frame < 0:
            raise HTTPException(404, f"video {video_id} run {run} has no QA output")
        from tasks.stages.runner import output_key

        try:
            data = store.get_bytes(f"{output_key(store, qa, 'idmaps')}{frame:05d}.png")
        except ObjectNotFound:
            raise HTTPException(404, f"no id map for frame {frame}") from None
        return Response(_colour_idmap(data, w), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/object/{key:path}", dependencies=dep(auth.read_pipeline))
    def store_object(request: Request, key: str):
        """A pipeline object (preview, crop, raw upload, release file): the file itself on a local
        store (with byte ranges, so the player can seek), a short-lived presigned link on S3."""
        store = store_or_banner()
        try:
            from tasks.storage import check_key

            check_key(key)
        except ValueError as exc:
            raise HTTPException(404, str(exc)) from None
        if not key.startswith(SERVABLE) or key.startswith(layout.RELEASES + "_candidates/"):
            raise HTTPException(404, f"{key} is not pipeline data the dashboard serves")
        path = getattr(store, "path", None)
        if callable(path):
            p = path(key)
            if not p.is_file():
                raise HTTPException(404, f"no object {key}")
            return FileResponse(p, media_type=mimetypes.guess_type(key)[0] or "application/octet-stream")
        presign = getattr(store, "presigned_get", None)
        if callable(presign):
            if not guarded(store.exists, key):
                raise HTTPException(404, f"no object {key}")
            return RedirectResponse(guarded(presign, key, _dt.timedelta(minutes=30)), status_code=307)
        try:
            data = guarded(store.get_bytes, key)
        except ObjectNotFound:
            raise HTTPException(404, f"no object {key}") from None
        return Response(data, media_type=mimetypes.guess_type(key)[0] or "application/octet-stream")

    # -- quarantine -----------------------------------------------------------------------------
    @app.get("/quarantine", response_class=HTMLResponse, dependencies=dep(auth.read_pipeline))
    def quarantine(request: Request, released: str | None = Query(None)):
        from tasks.quarantine import list_quarantined

        store = store_or_banner()
        rows = guarded(list_quarantined, store)
        return render(request, "quarantine.html", rows=rows, released=released, title="Quarantine")

    if authorize:
        release_deps = [Depends(auth.edit_pipeline)]

        def who(user: Annotated[Any, Depends(auth.current_user)]) -> str:
            return auth.user_name(user)
    else:
        release_deps = []

        def who() -> str:
            return "airflow:unauthenticated"

    who_dep = Depends(who)   # a local: with postponed annotations FastAPI could not resolve `who` in Annotated[]

    @app.post("/quarantine/{video_id}/release", dependencies=release_deps)
    def release_quarantine(request: Request, video_id: str, by: str = who_dep, confirm: Annotated[str, Form()] = ""):
        from tasks.quarantine import NotQuarantined, release_quarantine

        store = store_or_banner()
        if confirm != video_id:
            raise HTTPException(400, "confirm the release by sending the video id as 'confirm'")
        try:
            guarded(release_quarantine, store, video_id, by=by, passthrough=(NotQuarantined,))
        except NotQuarantined as exc:
            return render(request, "error.html", 404, title="Not quarantined", message=str(exc))
        guarded(dash.cache().refresh_now)
        return RedirectResponse(f"{base(request)}/quarantine?released={quote(video_id)}", status_code=303)

    # -- releases -------------------------------------------------------------------------------
    @app.get("/releases", response_class=HTMLResponse, dependencies=dep(auth.read_releases))
    def releases_page(request: Request):
        store = store_or_banner()
        return render(request, "releases.html", releases=guarded(views.releases, store, 1000), title="Releases")

    @app.get("/releases/{version}", response_class=HTMLResponse, dependencies=dep(auth.read_releases))
    def release(request: Request, version: int):
        store = store_or_banner()
        r = guarded(views.release_detail, store, version)
        return render(request, "release.html", r=r, title=f"Release v{version}")

    @app.get("/releases/{version}/data_docs/{path:path}", dependencies=dep(auth.read_releases))
    def data_docs(request: Request, version: int, path: str):
        store = store_or_banner()
        key = f"{layout.release_prefix(version)}data_docs/{path or 'index.html'}"
        try:
            from tasks.storage import check_key

            check_key(key)
            data = guarded(store.get_bytes, key)
        except (ValueError, ObjectNotFound):
            raise HTTPException(404, f"release v{version} has no Data Docs file {path!r}") from None
        media = mimetypes.guess_type(key)[0] or "application/octet-stream"
        if key.endswith(".html"):
            html = rewrite_data_docs(data.decode("utf-8", errors="replace"), f"{base(request)}/static/vendor")
            return HTMLResponse(html)
        return Response(data, media_type=media)

    # -- links from Airflow's pages ----------------------------------------------------------------
    @app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse, dependencies=dep(auth.read_pipeline))
    def dag_run(request: Request, dag_id: str, run_id: str, background: BackgroundTasks):
        version = _airflow(dash.airflow.release_of_run, None, dag_id, run_id)
        if version is not None:
            return RedirectResponse(f"{base(request)}/releases/{version}", status_code=307)
        store_or_banner()
        keys = _airflow(dash.airflow.run_keys, [], dag_id, run_id)
        index = scanned_index(background)
        by_key = views.videos_of_keys(index, keys)
        return render(request, "run.html", dag_id=dag_id, run_id=run_id, keys=keys, by_key=by_key,
                      status_of=index.status_of(), title=f"Run {run_id}")

    @app.get("/tasks/{dag_id}/{run_id}/{task_id}/{map_index}", dependencies=dep(auth.read_pipeline))
    def task_instance(request: Request, dag_id: str, run_id: str, task_id: str, map_index: int,
                      background: BackgroundTasks):
        key = _airflow(dash.airflow.task_key, None, dag_id, run_id, task_id, map_index)
        if not key:
            return render(request, "error.html", 404, title="No video for this task",
                          message=f"task {task_id} [{map_index}] of run {run_id} is not a stage task of an upload "
                                  "(or has not rendered its upload key yet).")
        store_or_banner()
        index = scanned_index(background)
        vid = views.videos_of_keys(index, [key]).get(key)
        if vid is None:
            return render(request, "error.html", 404, title="Not ingested",
                          message=f"the upload {key} has no video in the store yet (its ingest did not commit).")
        return RedirectResponse(f"{base(request)}/videos/{vid}", status_code=307)

    # -- static files (vendored; behind the same login) -------------------------------------------
    @app.get("/static/{path:path}", dependencies=dep(auth.read_pipeline))
    def static(path: str):
        p = (STATIC / path).resolve()
        if not p.is_file() or STATIC not in p.parents:
            raise HTTPException(404, f"no static file {path!r}")
        return FileResponse(p, headers={"Cache-Control": "private, max-age=86400"})

    return app


def _airflow(fn, default, *args):
    """Ask Airflow's database; if it cannot answer, the page still shows the store's view."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 -- logged; the dashboard degrades to the store's data
        log.exception("Airflow state query %s failed", getattr(fn, "__name__", fn))
        return default


def _manifest(store, video_id, run, stage):
    try:
        return store.get_json(layout.manifest_key(video_id, run, stage))
    except ObjectNotFound:
        return None


def _ago(epoch: float | None) -> str:
    if not epoch:
        return "never"
    s = max(0, int(_dt.datetime.now(_dt.UTC).timestamp() - epoch))
    return f"{s} s ago" if s < 120 else f"{s // 60} min ago"


def _colour_idmap(png: bytes, width: int) -> bytes:
    import cv2
    import numpy as np

    ids = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if ids is None:
        raise HTTPException(404, "the id map cannot be decoded")
    h = max(1, round(ids.shape[0] * width / ids.shape[1]))
    small = cv2.resize(ids, (width, h), interpolation=cv2.INTER_NEAREST)
    # a fixed colour per id, the same on every thumbnail: an integer hash (splitmix64's finaliser)
    # of the id, each channel in 60..255 so no track is near the black of unlabeled pixels
    uniq, inv = np.unique(small, return_inverse=True)
    x = uniq.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    lut = np.stack([60 + (x >> np.uint64(s)) % np.uint64(196) for s in (0, 16, 32)], axis=-1).astype(np.uint8)
    lut[uniq == 0] = 0
    rgb = lut[inv.reshape(small.shape)]
    ok, buf = cv2.imencode(".png", rgb)
    return buf.tobytes()
