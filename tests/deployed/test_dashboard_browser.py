"""The ops dashboard in a real browser, inside the Airflow UI as deployed (issue 14).

A real ``airflow api-server`` on loopback, started with the Airflow image's folder layout
(tests/deployed/deployment.py: the plugins folder as the image has it, ``airflow db migrate`` and
the pools file as compose's init does), and a store holding the tiny synthetic clip labeled by the
whole chain, released through the Great Expectations gate, plus one quarantined upload. Debian's
``chromium`` driven headless through Debian's ``chromedriver`` (Selenium is told where both are
and never downloads a browser or driver: ``SE_OFFLINE``):

1. log in on Airflow's login page (simple auth manager, user ``admin``);
2. open the dashboard from Airflow's navigation (Browse -> Ops dashboard): the page is embedded,
   authorized by the UI's login cookie, and shows the store's counts and Airflow's pools;
3. open the video page: the preview player loads the QA preview, the flags show their crops;
4. open the release page: the Great Expectations Data Docs render with the vendored scripts (the
   validation table is filled in by bootstrap-table, which would fail if a CDN was needed);
5. release the quarantined upload as the admin;
6. without a login the dashboard answers 401 to a plain HTTP client.

Screenshots of each step are saved in the test's temporary folder (its path is printed) and,
when ``LEADER360V_TEST_ARTIFACTS`` names a folder, copied there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.deployed.deployment import AIRFLOW, Deployment, DeploymentError
from tests.support.stores import released_with_quarantined_upload

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CHROMIUM = os.environ.get("LEADER360V_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LEADER360V_CHROMEDRIVER", "/usr/bin/chromedriver")
BAD_KEY = "raw/2026-11-27/not_a_video.mp4"


@pytest.fixture(scope="module")
def store_data(labeled_tiny, tmp_path_factory):
    """A labeled, released store with one quarantined upload: (root, video id, run, quarantined id)."""
    src, vid, run, _ = labeled_tiny
    store, bad = released_with_quarantined_upload(src, tmp_path_factory.mktemp("dash-store") / "store", BAD_KEY)
    return store.root, vid, run, bad


@pytest.fixture(scope="module")
def api_server(store_data, tmp_path_factory):
    """Only the api-server of the deployment: the dashboard is served by it alone."""
    root, *_ = store_data
    dep = Deployment(tmp_path_factory.mktemp("dash-deployed"))
    dep.lay_out()
    dep.init()
    shutil.copytree(root, dep.store, dirs_exist_ok=True)
    with open(dep.logs / "api-server.log", "wb") as log:
        dep.procs["api-server"] = subprocess.Popen(
            [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(dep.port), "--workers", "1"],
            env=dep.env, cwd=dep.root, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    try:
        dep.wait_for("the api-server", lambda: httpx.get(f"{dep.url}/api/v2/monitor/health", timeout=5).status_code == 200,
                     timeout=300, every=2.0)
        yield dep
    except BaseException:
        print(dep.component_logs())
        raise
    finally:
        dep.stop()


@pytest.fixture(scope="module")
def browser():
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).is_file():
            pytest.fail(f"{path} is missing: install Debian's {pkg} (`make system-deps` does)")
    os.environ["SE_OFFLINE"] = "true"   # Selenium Manager must not download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dashboard-screenshots")
    saved: list[Path] = []

    def save(driver, name: str) -> None:
        driver.switch_to.default_content()
        path = folder / f"{len(saved) + 1:02d}-{name}.png"
        driver.save_screenshot(str(path))
        saved.append(path)

    yield save
    print(f"dashboard screenshots: {folder}")
    target = os.environ.get("LEADER360V_TEST_ARTIFACTS")
    if target:
        dest = Path(target) / "dashboard"
        dest.mkdir(parents=True, exist_ok=True)
        for p in saved:
            shutil.copy2(p, dest / p.name)


def wait(what: str, probe, timeout: float = 60.0, every: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as exc:  # noqa: BLE001 -- the page is still loading; try again
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def in_dashboard_frame(driver):
    """Switch into the dashboard's iframe inside the Airflow UI."""
    from selenium.webdriver.common.by import By

    driver.switch_to.default_content()
    frame = wait("the dashboard iframe", lambda: [f for f in driver.find_elements(By.TAG_NAME, "iframe")
                                                  if "/leader360v/" in (f.get_attribute("src") or "")])
    driver.switch_to.frame(frame[0])


def test_dashboard_in_the_airflow_ui(api_server, store_data, browser, shots):
    from selenium.webdriver.common.by import By

    from tasks import layout
    from tasks.storage import LocalStore

    dep, d = api_server, browser
    root, vid, run, bad = store_data
    store = LocalStore(dep.store)

    # 1. log in on Airflow's own login page
    d.get(dep.url + "/")
    wait("the login form", lambda: d.find_elements(By.NAME, "username"))
    d.find_element(By.NAME, "username").send_keys("admin")
    d.find_element(By.NAME, "password").send_keys(dep.password())
    d.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait("the Airflow home page", lambda: "/auth/login" not in d.current_url and d.find_elements(By.XPATH, "//*[text()='Browse']"))
    shots(d, "airflow-home")

    # 2. the dashboard from the navigation: Browse -> Ops dashboard
    d.find_element(By.XPATH, "//button[.//*[text()='Browse'] or text()='Browse']").click()
    item = wait("the Ops dashboard menu item", lambda: [e for e in d.find_elements(By.XPATH, "//*[text()='Ops dashboard']")
                                                        if e.is_displayed()])
    item[0].click()
    wait("the plugin page", lambda: "/plugin/leader360v-ops" in d.current_url)
    in_dashboard_frame(d)
    wait("the overview", lambda: d.find_elements(By.ID, "totals"))
    totals = {e.get_attribute("class").removeprefix("total-"): e.text
              for e in d.find_elements(By.CSS_SELECTOR, "#totals td")}
    from tasks.review.approval import needs_review

    held = needs_review(store, vid, run)   # "waiting for review" only while the human gate holds it
    assert totals == {"ready": str(int(not held)), "approved": "0", "revised": "0", "review": str(int(held)),
                      "rejected": "0", "in_progress": "0", "failed": "0", "quarantined": "1"}
    pools = d.find_element(By.ID, "pools").text
    assert "gpu" in pools and "default_pool" in pools            # from Airflow's database (pools.json)
    assert len(d.find_elements(By.CSS_SELECTOR, "svg.plot")) >= 4
    shots(d, "overview")

    # 3. a video page: the preview player and the flags with their crops
    in_dashboard_frame(d)
    d.find_element(By.ID, "nav-videos").click()
    wait("the videos list", lambda: d.find_elements(By.LINK_TEXT, vid))[0].click()
    wait("the video page", lambda: d.find_elements(By.ID, "preview"))
    duration = wait("the preview to load", lambda: d.execute_script(
        "const v = document.getElementById('preview'); return v.readyState >= 1 ? v.duration : 0;"))
    frames = store.get_json(layout.manifest_key(vid, run, "qa"))["stats"]["frames"]
    fps = store.get_json(layout.source_key(vid))["probe"]["fps"]
    assert duration == pytest.approx(frames / fps, abs=0.3)
    flags = store.get_json(layout.stage_prefix(vid, run, "qa") + "flags.json")["flags"]
    assert len(d.find_elements(By.CSS_SELECTOR, "#flags .flag")) == len(flags) > 0
    crops = d.find_elements(By.CSS_SELECTOR, "#flags .flag img")
    assert crops and wait("the crops to load", lambda: all(
        d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", c) for c in crops))
    assert len(d.find_elements(By.CSS_SELECTOR, "#thumbnails img")) == 8
    assert d.find_element(By.ID, "config-hash").text == run
    shots(d, "video")

    # 4. the release page with the Great Expectations Data Docs
    in_dashboard_frame(d)
    d.find_element(By.ID, "nav-releases").click()
    wait("the releases list", lambda: d.find_elements(By.LINK_TEXT, "v1"))[0].click()
    wait("the release page", lambda: d.find_elements(By.ID, "gate"))
    assert d.find_element(By.ID, "gate").text == "passed"
    assert "release v1" in d.find_element(By.ID, "card").text
    d.switch_to.frame(d.find_element(By.ID, "data-docs"))
    wait("the Data Docs validation table", lambda: len(d.find_elements(
        By.CSS_SELECTOR, "table tbody tr[data-index]")) >= 2)
    text = d.find_element(By.TAG_NAME, "body").text
    assert "Validation Results" in text and f"video_{vid}" in text
    # the pass marks are Font Awesome glyphs: the vendored font must have loaded
    assert d.find_elements(By.CSS_SELECTOR, "table tbody tr[data-index] .fa-check-circle")
    assert wait("the icon font", lambda: d.execute_script(
        "return [...document.fonts].some(f => f.family.includes('Font Awesome') && f.status === 'loaded')"))
    shots(d, "release")

    # 5. release the quarantined upload (the admin may)
    in_dashboard_frame(d)
    d.find_element(By.ID, "nav-quarantine").click()
    wait("the quarantine page", lambda: bad in d.find_element(By.ID, "quarantine").text)
    form = d.find_element(By.CSS_SELECTOR, f"form[action$='/quarantine/{bad}/release']")
    form.find_element(By.XPATH, "./ancestor::details/summary").click()    # no JS dialog: the UI's iframe
    form.find_element(By.TAG_NAME, "button").click()                      # sandbox allows no modals
    wait("the release notice", lambda: d.find_elements(By.ID, "released"))
    assert not store.exists(layout.quarantine_key(bad))
    shots(d, "quarantine-released")

    severe = [e for e in d.get_log("browser") if e["level"] == "SEVERE" and "/leader360v/" in e["message"]]
    assert not severe, severe


def test_without_a_login_the_dashboard_answers_401(api_server):
    for path in ("/leader360v/", "/leader360v/quarantine", "/leader360v/static/dashboard.css"):
        assert httpx.get(api_server.url + path, timeout=30).status_code == 401
    r = httpx.get(api_server.url + "/leader360v/", headers={"Authorization": f"Bearer {api_server.token()}"},
                  timeout=60)
    assert r.status_code == 200 and "Overview" in r.text
    views = {v["destination"] for p in api_server.plugins() for v in p["external_views"]}
    assert {"nav", "dag_run", "task_instance"} <= views
    if api_server.plugin_import_errors():
        raise DeploymentError(f"plugin import errors: {api_server.plugin_import_errors()}")
