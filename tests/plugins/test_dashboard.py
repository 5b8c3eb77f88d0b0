"""The ops dashboard's FastAPI app (issue 14), every route through FastAPI's TestClient.

The store is real: the tiny synthetic clip labeled by the whole chain (conftest ``labeled_tiny``),
released through the Great Expectations gate, plus an upload the ingest stage quarantined. Airflow's
authorization dependencies are overridden here (a fake user) except in the tests that check them;
Airflow's run/task state comes from a small fake of the dashboard's Airflow reader, and the real
reader is checked against a migrated Airflow database.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from leader360v_airflow.dashboard import auth
from leader360v_airflow.dashboard.airflow_state import AirflowDB, NoAirflow
from leader360v_airflow.dashboard.app import create_app, rewrite_data_docs
from tasks import layout
from tasks.storage import LocalStore, open_store
from tests.support.stores import copy_store, released_with_quarantined_upload

BAD_KEY = "raw/2026-11-27/not_a_video.mp4"


class User:
    def __init__(self, name: str):
        self.name = name

    def get_name(self) -> str:
        return self.name


class FakeAirflow(NoAirflow):
    """What Airflow's database would say about the labeled upload (one run, every stage green)."""

    available = True

    def __init__(self, key: str | None = None, failed: list[dict] | None = None):
        self.key, self.failed = key, failed or []

    def failed_uploads(self, since):
        return self.failed

    def pools(self):
        return [{"pool": "gpu", "total": 2, "running": 1, "queued": 3, "deferred": 0, "scheduled": 0, "open": 1}]

    def stage_tasks(self, key):
        if key != self.key:
            return []
        return [{"dag_id": "leader360v_nightly", "run_id": "manual__2026-11-28T00:00:00+00:00", "task_id": f"video.{s}",
                 "stage": s, "map_index": 0, "state": "success", "try_number": 1, "start": None, "end": None}
                for s in ("ingest", "qa")]

    def run_keys(self, dag_id, run_id):
        return [self.key, "raw/never/ingested.mp4"] if dag_id == "leader360v_nightly" else []

    def task_key(self, dag_id, run_id, task_id, map_index):
        return self.key if map_index == 0 else None

    def release_of_run(self, dag_id, run_id):
        return 1 if dag_id == "leader360v_release" else None


@pytest.fixture(scope="module")
def released(labeled_tiny, tmp_path_factory):
    """(store, video_id, run, quarantined id): labeled, released as v1, one upload quarantined."""
    src, vid, run, _ = labeled_tiny
    store, bad = released_with_quarantined_upload(src, tmp_path_factory.mktemp("dash") / "store", BAD_KEY)
    return store, vid, run, bad


def client_for(store, tmp_path, airflow=None, user="tester", **kw) -> TestClient:
    app = create_app(store=store, airflow=airflow if airflow is not None else NoAirflow(), cache_dir=tmp_path / "cache",
                     **kw)
    for dep in (auth.read_pipeline, auth.read_releases, auth.edit_pipeline):
        app.dependency_overrides[dep] = lambda: None
    app.dependency_overrides[auth.current_user] = lambda: User(user)
    return TestClient(app)


@pytest.fixture
def private(released, tmp_path):
    """A copy of the released store a test may change."""
    store, vid, run, bad = released
    return copy_store(store, tmp_path / "store"), vid, run, bad


def resources(html: str) -> list[str]:
    return re.findall(r'''<(?:script|link|img|video|iframe)\b[^>]*?(?:src|href)=["']([^"']+)["']''', html)


# -- pages -------------------------------------------------------------------------------------
def test_overview(released, tmp_path):
    store, vid, run, bad = released
    key = store.get_json(layout.source_key(vid))["key"]
    c = client_for(store, tmp_path, FakeAirflow(key, failed=[{"key": "raw/x/broken.mp4", "stage": "decode",
                                                             "when": "2026-11-28T01:00:00+00:00"}]))
    r = c.get("/")
    assert r.status_code == 200
    html = r.text
    flagged = any(store.get_json(layout.manifest_key(vid, run, "qa"))["stats"]["flags"].values())
    totals = dict(re.findall(r'<td class="total-(\w+)">(\d+)</td>', html))
    assert flagged   # flags, but no gate configured (review.gate_max_flags None): ready, not held
    assert totals == {"ready": "1", "approved": "0", "revised": "0", "review": "0", "rejected": "0",
                      "in_progress": "0", "failed": "1", "quarantined": "1"}
    assert html.count("<svg") >= 4 and 'aria-label="videos per day by status"' in html
    assert "quarantined: not_a_video" in html or "quarantined: " in html
    assert "failed at decode" in html
    assert re.search(r"<td>gpu</td><td>2</td><td>1</td><td>3</td>", html)        # pool usage
    assert 'href="/releases/1"' in html and "passed" in html                     # latest release + suite
    assert all(not u.startswith(("http://", "https://", "//")) for u in resources(html))


def test_videos_list_by_status(released, tmp_path):
    store, vid, run, bad = released
    c = client_for(store, tmp_path)
    all_ = c.get("/videos").text
    assert vid in all_ and bad in all_
    q = c.get("/videos?status=quarantined").text
    assert bad in q and f'href="/videos/{vid}"' not in q
    assert c.get("/videos?status=nonsense").status_code == 400


def test_video_page(released, tmp_path):
    store, vid, run, bad = released
    key = store.get_json(layout.source_key(vid))["key"]
    c = client_for(store, tmp_path, FakeAirflow(key))
    r = c.get(f"/videos/{vid}")
    assert r.status_code == 200
    html = r.text
    flags = store.get_json(layout.stage_prefix(vid, run, "qa") + "flags.json")["flags"]
    assert re.search(r'<video id="preview"[^>]+src="/object/videos/' + vid, html)
    assert html.count('class="flag"') == len(flags) > 0
    assert f'<code id="config-hash">{run}</code>' in html
    assert 'aria-label="coverage per frame"' in html and 'aria-label="camera rotation"' in html
    assert html.count('alt="id map of frame') == 8
    assert f'id="raw-link" href="/object/{key}"' in html
    # links to the Airflow task logs of each stage (the UI's sandboxed iframe allows no top navigation
    # or pop-up, so the link opens in place)
    assert re.search(r'class="log" href="/dags/leader360v_nightly/runs/manual__2026-11-28T00%3A00%3A00%2B00%3A00/'
                     r'tasks/video.qa/mapped/0"', html)
    # every resource of the page is served by the app, and answers
    for url in resources(html):
        assert c.get(url).status_code == 200, url


def test_preview_is_served_with_byte_ranges(released, tmp_path):
    store, vid, run, _ = released
    c = client_for(store, tmp_path)
    key = layout.stage_prefix(vid, run, "qa") + "preview.mp4"
    full = c.get(f"/object/{key}")
    assert full.status_code == 200 and full.headers["content-type"] == "video/mp4"
    assert full.content == store.get_bytes(key)
    part = c.get(f"/object/{key}", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == full.content[:100]


@pytest.mark.parametrize("key", ["leases/x.json", "audit/quarantine/a/b.json", "videos/../raw/x", "releases/_candidates/c/x"])
def test_only_pipeline_data_is_served(released, tmp_path, key):
    store, *_ = released
    assert client_for(store, tmp_path).get(f"/object/{key}").status_code == 404


def test_id_map_thumbnail_colours_each_track(released, tmp_path):
    store, vid, run, _ = released
    c = client_for(store, tmp_path)
    r = c.get(f"/videos/{vid}/idmap/{run}/3.png?w=128")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    rgb = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    idmaps = store.get_json(layout.manifest_key(vid, run, "qa"))["keys"]["idmaps"]   # what the release holds
    ids = cv2.imdecode(np.frombuffer(store.get_bytes(idmaps + "00003.png"), np.uint8), cv2.IMREAD_UNCHANGED)
    assert rgb.shape[1] == 128 and rgb.shape[0] == round(ids.shape[0] * 128 / ids.shape[1])
    small = cv2.resize(ids, (128, rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
    assert (rgb[small == 0] == 0).all()
    present = [t for t in np.unique(small) if t]
    colours = {int(t): tuple(int(x) for x in rgb[small == t][0]) for t in present}
    assert len(set(colours.values())) == len(present), colours        # one colour per track
    assert c.get(f"/videos/{vid}/idmap/{run}/99999.png").status_code == 404
    assert c.get(f"/videos/{vid}/idmap/zzz/3.png").status_code == 404


def test_release_page_and_its_data_docs(released, tmp_path):
    store, vid, run, _ = released
    c = client_for(store, tmp_path)
    r = c.get("/releases/1")
    assert r.status_code == 200
    html = r.text
    doc = store.get_json("releases/v1/annotations.json")
    assert "# Leader360V-style 360° video segmentation + tracking dataset — release v1" in html
    assert 'id="gate" class="status s-success"' in html
    assert 'aria-label="objects per class"' in html and 'aria-label="solid-angle area by class"' in html
    assert f"<td>{len(doc['annotations'])}</td>" in html                        # objects of the one video
    manifest = store.get_json("releases/v1/manifest.json")
    assert len(re.findall(r"<tr><td><code>", html)) == len(manifest["files"])  # checksums listed
    assert "first release" in html
    docs = c.get("/releases/1/data_docs/index.html")
    assert docs.status_code == 200 and "Data Docs" in docs.text
    # GX's own page, with nothing of it fetched from a CDN: vendored copies, served here
    for url in resources(docs.text):
        assert not url.startswith(("http://", "https://", "//")), url
    vendored = [u for u in resources(docs.text) if u.startswith("/static/vendor/")]
    assert len(vendored) >= 6 and all(c.get(u).status_code == 200 for u in vendored)
    page = next(k for k in store_keys(store, "releases/v1/data_docs/validations/") if k.endswith(".html"))
    sub = c.get("/releases/1/data_docs/" + page[len("releases/v1/data_docs/"):])
    assert sub.status_code == 200 and not [u for u in resources(sub.text) if u.startswith("http")]
    assert c.get("/releases/1/data_docs/../../../raw/x").status_code == 404


def store_keys(store, prefix):
    return [i.key for i in store.list(prefix)]


def test_what_changed_since_the_previous_release(private, tmp_path):
    store, vid, run, _ = private
    # v2: the same files, one more video and one more object of the class of the first object
    # (which classes the synthetic clip gets depends on the labeling, not on this page)
    shutil.copytree(store.path("releases/v1"), store.path("releases/v2"))
    m = store.get_json("releases/v2/manifest.json")
    m["version"] = 2
    m["videos"].append({"video_id": "00000000000000aa", "run": run})
    store.put_json("releases/v2/manifest.json", m)
    doc = store.get_json("releases/v2/annotations.json")
    tree = doc["annotations"][0]["category_id"]
    name = next(c["name"] for c in doc["categories"] if c["id"] == tree)
    doc["annotations"].append({**doc["annotations"][0], "id": 10**6, "category_id": tree})
    store.put_json("releases/v2/annotations.json", doc)
    html = client_for(store, tmp_path).get("/releases/2").text
    assert "What changed since v1" in html
    assert "videos added: 1 <code>00000000000000aa</code>" in html
    old = sum(1 for a in store.get_json("releases/v1/annotations.json")["annotations"] if a["category_id"] == tree)
    assert f"{name} {old} → {old + 1}" in html


def test_releases_list(released, tmp_path):
    store, *_ = released
    html = client_for(store, tmp_path).get("/releases").text
    assert 'href="/releases/1"' in html and 'href="/releases/1/data_docs/index.html"' in html


# -- quarantine ----------------------------------------------------------------------------------
def test_quarantine_page_and_release(private, tmp_path):
    store, vid, run, bad = private
    c = client_for(store, tmp_path, user="ops-alice")
    html = c.get("/quarantine").text
    assert bad in html and BAD_KEY in html and "not_a_video" in html
    assert c.get("/").text.count('<td class="total-quarantined">1</td>') == 1
    assert c.post(f"/quarantine/{bad}/release", data={"confirm": "wrong"}).status_code == 400
    r = c.post(f"/quarantine/{bad}/release", data={"confirm": bad}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/quarantine?released={bad}"
    assert not store.exists(layout.quarantine_key(bad))
    (audit,) = list(store.list(f"audit/quarantine/{bad}/"))
    assert store.get_json(audit.key)["released_by"] == "airflow:ops-alice"
    assert bad not in c.get("/quarantine").text.split("</table>")[0].split("<tr>", 2)[-1]
    assert '<td class="total-quarantined">0</td>' in c.get("/").text          # the scan was refreshed
    again = c.post(f"/quarantine/{bad}/release", data={"confirm": bad})
    assert again.status_code == 404 and "not quarantined" in again.text


def test_waiting_for_review_only_while_the_gate_holds_it(private, tmp_path):
    """The overview, the videos list and the video page read the human gate (tasks/review/approval.py):
    held -> waiting for review with its CVAT export linked; approved -> who and when."""
    from tasks.review import approval

    store, vid, run, _ = private
    key = layout.run_config_key(vid, run)
    cfg = store.get_json(key)
    cfg.setdefault("review", {})["gate_max_flags"] = 0
    store.put_json(key, cfg)
    cvat = approval.review_prefix(vid, run) + "cvat/annotations.xml"
    store.put_bytes(cvat, b"<annotations><version>1.1</version></annotations>")   # what gate_request exports
    c = client_for(store, tmp_path)
    totals = dict(re.findall(r'<td class="total-(\w+)">(\d+)</td>', c.get("/").text))
    assert totals["review"] == "1" and totals["ready"] == "0"
    assert ">waiting for review</a>" in c.get("/").text
    assert f'href="/videos/{vid}"' in c.get("/videos?status=review").text
    html = c.get(f"/videos/{vid}").text
    assert 'id="review-status">waiting for review<' in html and 'id="decision"' not in html
    link = re.search(r'id="cvat-export" href="([^"]+)"', html).group(1)
    got = c.get(link)
    assert got.status_code == 200 and b"<annotations>" in got.content
    assert f"review show --video-id {vid} --run {run}" in html

    approval.record_decision(store, vid, run, approved=True, by="ana", at="2026-11-28T09:00:00+00:00")
    c.app.state.dashboard.cache().refresh_now()
    totals = dict(re.findall(r'<td class="total-(\w+)">(\d+)</td>', c.get("/").text))
    assert totals["review"] == "0" and totals["approved"] == "1"
    html = c.get(f"/videos/{vid}").text
    assert 'id="review-status">approved<' in html
    assert re.search(r'id="decision">approved by <strong>ana</strong> at 2026-11-28T09:00:00\+00:00', html)



def test_a_rejection_shows_with_its_reason(private, tmp_path):
    """Held by the nightly DAG's gate (a pending record, the run's config untouched), then rejected
    with a comment: the overview counts it rejected, the videos list and the video page say why."""
    from tasks.review import approval

    store, vid, run, _ = private
    assert approval.apply_gate(store, vid, run, 0) == "held"
    c = client_for(store, tmp_path)
    assert dict(re.findall(r'<td class="total-(\w+)">(\d+)</td>', c.get("/").text))["review"] == "1"
    html = c.get(f"/videos/{vid}").text
    assert 'id="review-status">waiting for review<' in html and 'id="decision"' not in html
    assert "more than the 0 this configuration lets through" in html

    approval.record_decision(store, vid, run, approved=False, by="ana", at="2026-11-28T10:00:00+00:00",
                             note="the bench is labeled car")
    c.app.state.dashboard.cache().refresh_now()
    totals = dict(re.findall(r'<td class="total-(\w+)">(\d+)</td>', c.get("/").text))
    assert totals["rejected"] == "1" and totals["review"] == "0" and totals["ready"] == "0"
    assert "quarantined: the bench" not in c.get("/").text          # a rejection is no quarantine reason
    listed = c.get("/videos?status=rejected").text
    assert f'href="/videos/{vid}"' in listed and "the bench is labeled car" in listed
    html = c.get(f"/videos/{vid}").text
    assert 'id="review-status">rejected (waiting for corrections)<' in html
    assert re.search(r'id="decision">rejected by <strong>ana</strong> at 2026-11-28T10:00:00\+00:00', html)
    assert '<span id="decision-note">the bench is labeled car</span>' in html

# -- links from Airflow's pages --------------------------------------------------------------------
def test_dag_run_and_task_instance_views(released, tmp_path):
    store, vid, run, _ = released
    key = store.get_json(layout.source_key(vid))["key"]
    c = client_for(store, tmp_path, FakeAirflow(key))
    html = c.get("/runs/leader360v_nightly/scheduled__2026-11-28T02:00:00+00:00").text
    assert f'href="/videos/{vid}"' in html and "raw/never/ingested.mp4" in html and "not ingested" in html
    r = c.get("/runs/leader360v_release/manual__1", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/releases/1"
    r = c.get("/tasks/leader360v_nightly/run1/video.qa/0", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == f"/videos/{vid}"
    assert c.get("/tasks/leader360v_nightly/run1/summary/-1").status_code == 404


# -- bad input -------------------------------------------------------------------------------------
def test_empty_store(tmp_path):
    c = client_for(LocalStore(tmp_path / "empty"), tmp_path)
    html = c.get("/").text
    assert "0 videos in the store" in html and "no release published yet" in html
    assert "nothing is quarantined" in c.get("/quarantine").text
    assert "no videos" in c.get("/videos").text


def test_half_written_stage(private, tmp_path):
    store, vid, run, _ = private
    store.delete(layout.manifest_key(vid, run, "qa"))      # qa's outputs are there, its manifest is not
    store.delete(layout.manifest_key(vid, run, "validate"))
    c = client_for(store, tmp_path)
    assert '<td class="total-in_progress">1</td>' in c.get("/").text
    html = c.get(f"/videos/{vid}").text
    assert 'id="no-preview"' in html and "<video" not in html
    assert re.search(r"<td>qa</td><td>—</td>", html) and re.search(r"<td>refine</td><td>yes</td>", html)


def test_manifests_of_an_older_pipeline(private, tmp_path):
    from tasks.stages import STAGE_NAMES

    store, vid, run, _ = private
    for stage in STAGE_NAMES:
        key = layout.manifest_key(vid, run, stage)
        m = store.get_json(key)
        for k in ("stats", "seconds", "config_hash", "code_version"):
            m.pop(k, None)
        store.put_json(key, m)
    c = client_for(store, tmp_path)
    assert c.get("/").status_code == 200
    r = c.get(f"/videos/{vid}")
    assert r.status_code == 200 and f'<code id="config-hash">{run}</code>' in r.text


@pytest.mark.parametrize("vid", ["0000000000000000", "not-an-id", "ZZZZZZZZZZZZZZZZ"])
def test_unknown_video_is_a_404_page(released, tmp_path, vid):
    store, *_ = released
    r = client_for(store, tmp_path).get(f"/videos/{vid}")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "No such video" in r.text and "Traceback" not in r.text
    assert client_for(store, tmp_path).get("/releases/42").status_code == 404


def test_unreachable_store_is_a_banner(tmp_path):
    store = open_store("s3://leader360v?endpoint=127.0.0.1:9&secure=false", access_key="a", secret_key="b", retries=0)
    c = client_for(store, tmp_path)
    for path in ("/", "/videos", "/quarantine", "/releases", "/releases/1", "/videos/0123456789abcdef"):
        r = c.get(path)
        assert r.status_code == 503, path
        assert 'id="banner"' in r.text and "127.0.0.1:9" in r.text and "Traceback" not in r.text


def test_a_store_that_cannot_be_opened_is_a_banner(tmp_path):
    from tasks.errors import ConfigError

    def broken():
        raise ConfigError("LEADER360V_STORE names no bucket")

    app = create_app(store_factory=broken, airflow=NoAirflow(), cache_dir=tmp_path)
    app.dependency_overrides[auth.read_pipeline] = lambda: None
    r = TestClient(app).get("/")
    assert r.status_code == 503 and "LEADER360V_STORE names no bucket" in r.text


@pytest.fixture
def s3_store(released):
    """The released store copied to an S3 server on loopback (moto's server mode, as MinIO in
    production); yields (store, moto server, video id)."""
    import logging
    import uuid

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    local, vid, _, _ = released
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    store = open_store(f"s3://l360-dash-{uuid.uuid4().hex[:8]}?endpoint={host}:{port}&secure=false&create=true",
                       access_key="testing", secret_key="testing", retries=0)
    for info in local.list(""):
        if not info.key.startswith(("releases/v1/JPEGImages/", "releases/v1/Annotations/")):
            store.put_file(info.key, local.path(info.key))
    try:
        yield store, server, vid
    finally:
        server.stop()


def test_s3_store_presigned_links_and_a_store_lost_after_a_scan(s3_store, tmp_path):
    store, server, vid = s3_store
    c = client_for(store, tmp_path, refresh_s=3600)
    before = c.get("/")
    assert before.status_code == 200 and "2 videos in the store" in before.text
    html = c.get(f"/videos/{vid}").text
    raw = re.search(r'id="raw-link" href="([^"]+)"', html).group(1)
    assert "X-Amz-Signature=" in raw and raw.startswith("http://127.0.0.1:")      # presigned, not proxied
    preview = re.search(r'<video id="preview"[^>]+src="([^"]+)"', html).group(1)
    r = c.get(preview, follow_redirects=False)
    assert r.status_code == 307 and "X-Amz-Signature=" in r.headers["location"]
    assert c.get("/releases/1/data_docs/index.html").status_code == 200
    server.stop()                                       # the store goes away after a scan
    c.app.state.dashboard.cache().refresh_now()
    r = c.get("/")
    assert r.status_code == 200 and 'id="banner"' in r.text and "cannot list" in r.text
    assert "2 videos in the store" in r.text            # the last scan still shown
    assert c.get(f"/videos/{vid}").status_code == 503


# -- authorization -----------------------------------------------------------------------------------
def _routes(app):
    fill = {"video_id": "0123456789abcdef", "run": "487e410add03", "frame": "0", "key": "videos/x",
            "version": "1", "path": "index.html", "dag_id": "leader360v_nightly", "run_id": "r", "task_id": "video.qa",
            "map_index": "0"}
    for route in app.routes:
        for method in sorted(getattr(route, "methods", ()) - {"HEAD"}):
            yield method, re.sub(r"{(\w+)(?::path)?}", lambda m: fill[m.group(1)], route.path)


def test_every_route_needs_a_login(released, tmp_path):
    from airflow.api_fastapi.app import create_auth_manager

    store, *_ = released
    create_auth_manager()   # as the api-server does at start: a token is checked by the auth manager
    app = create_app(store=store, airflow=NoAirflow(), cache_dir=tmp_path)
    c = TestClient(app)
    routes = list(_routes(app))
    assert len(routes) == 13 and ("POST", "/quarantine/0123456789abcdef/release") in routes
    for method, path in routes:
        r = c.request(method, path)
        assert r.status_code in (401, 403), (method, path, r.status_code)
        r = c.request(method, path, headers={"Authorization": "Bearer not-a-token"}, cookies={"_token": "x"})
        assert r.status_code in (401, 403), (method, path, r.status_code)


@pytest.mark.airflow
def test_a_viewer_reads_but_cannot_release_a_quarantine(private, tmp_path, airflow_db):
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user

    store, vid, run, bad = private
    create_auth_manager()
    app = create_app(store=store, airflow=NoAirflow(), cache_dir=tmp_path)
    c = TestClient(app)
    app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="vera", role="viewer")
    assert c.get("/quarantine").status_code == 200
    assert c.get(f"/videos/{vid}").status_code == 200
    assert c.post(f"/quarantine/{bad}/release", data={"confirm": bad}).status_code == 403
    assert store.exists(layout.quarantine_key(bad))
    app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="olga", role="op")
    r = c.post(f"/quarantine/{bad}/release", data={"confirm": bad}, follow_redirects=False)
    assert r.status_code == 303 and not store.exists(layout.quarantine_key(bad))


def test_auth_fails_closed_when_airflow_security_cannot_be_imported(monkeypatch):
    import builtins
    import importlib

    import leader360v_airflow.dashboard.auth as auth_mod

    real_import = builtins.__import__

    def no_security(name, *a, **k):
        if name.startswith("airflow.api_fastapi.core_api.security"):
            raise ImportError("simulated: no such module")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_security)
    try:
        mod = importlib.reload(auth_mod)
        assert mod.IMPORT_ERROR and "simulated" in mod.IMPORT_ERROR
        from fastapi import FastAPI, HTTPException

        with pytest.raises(HTTPException) as e:
            mod.read_pipeline()
        assert e.value.status_code == 403
        app = FastAPI()

        @app.get("/", dependencies=[__import__("fastapi").Depends(mod.read_pipeline)])
        def page():
            return "secret"

        assert TestClient(app).get("/").status_code == 403
    finally:
        monkeypatch.setattr(builtins, "__import__", real_import)
        importlib.reload(auth_mod)


# -- the pieces ----------------------------------------------------------------------------------------
def test_rewrite_data_docs_drops_every_external_resource():
    html = ('<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css" '
            'integrity="sha384-x" crossorigin="anonymous">'
            '<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>'
            '<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>'
            '<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1">'
            "<style>.n { background: url('https://x.example/logo.png') 0 0; }</style>"
            '<a href="https://greatexpectations.io">GX</a>')
    out = rewrite_data_docs(html, "/p/static/vendor")
    assert '<link rel="stylesheet" href="/p/static/vendor/bootstrap.min.css">' in out
    assert '<script src="/p/static/vendor/jquery.min.js"></script>' in out
    assert "vega" not in out and "<img" not in out and "url(" not in out
    assert '<a href="https://greatexpectations.io">GX</a>' in out       # a link, not a fetched resource
    for name in ("bootstrap.min.css", "jquery.min.js"):
        assert (Path(__file__).resolve().parents[2] / "plugins/leader360v_airflow/dashboard/static/vendor" / name).is_file()


@pytest.mark.airflow
def test_airflow_reader_on_a_real_database(airflow_db):
    import datetime as dt

    a = AirflowDB()
    pools = {p["pool"]: p for p in a.pools()}
    assert "default_pool" in pools and pools["default_pool"]["running"] == 0
    # the session's database may hold failed runs of earlier DAG tests: every row names its upload,
    # and nothing has failed since now
    for row in a.failed_uploads(dt.datetime.now(dt.UTC) - dt.timedelta(days=14)):
        assert row["key"].startswith("raw/") and row["stage"] and row["run_id"] and row["when"], row
    assert a.failed_uploads(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)) == []
    assert a.stage_tasks("raw/none.mp4") == [] and a.run_keys("leader360v_nightly", "r") == []
    assert a.task_key("leader360v_nightly", "r", "video.qa", 0) is None
    assert a.release_of_run("leader360v_release", "r") is None


def test_the_plugin_registers_the_app_and_its_views():
    import leader360v_plugin
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES

    plugin = leader360v_plugin.Leader360vPlugin()
    (app,) = plugin.fastapi_apps
    assert app["url_prefix"] == "/leader360v" and not any(app["url_prefix"].startswith(p) for p in RESERVED_URL_PREFIXES)
    views = {v["destination"]: v for v in plugin.external_views}
    assert set(views) == {"nav", "dag_run", "task_instance"}
    for v in views.values():
        assert v["href"].startswith("leader360v/") and v["url_route"]
    assert "{RUN_ID}" in views["dag_run"]["href"] and "{MAP_INDEX}" in views["task_instance"]["href"]
