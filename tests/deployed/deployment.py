"""Airflow as it is deployed, on loopback: the four components, the image's folder layout, REST v2.

Used by tests/deployed/test_deployed_airflow.py and tests/bench/bench_airflow.py.

* **Layout from the image, not a copy of it**: every ``COPY`` of ``docker/Dockerfile.airflow`` that
  lands under ``/opt/airflow`` (the image's ``AIRFLOW_HOME``: ``dags/``, ``plugins/``, the pod
  table, the pod templates, the pools file) is replayed into a fresh ``AIRFLOW_HOME`` in a temporary
  folder, and the image's ``ENV`` lines are applied with ``/opt/airflow`` mapped there. A change to
  the image's layout changes what this deployment runs.
* **The components as separate processes** -- ``api-server``, ``scheduler``, ``dag-processor``,
  ``triggerer`` -- as compose and the Helm chart run them (LocalExecutor, as compose; SQLite here),
  after ``airflow db migrate`` and ``airflow pools import``, as compose's ``airflow-init`` and the
  Helm values' migration job do. Every port is a free loopback port (other Airflow test runs may
  share the machine), every secret is random per deployment.
* **Through the REST API v2 only**, with a JWT from the simple auth manager's ``/auth/token``
  (user ``admin``, the password the api-server generates into ``AIRFLOW_HOME``), as a user would.
* **Everything it started is stopped**: each component is its own session; :meth:`stop` ends every
  process of each component's tree by id (task processes run in their own process groups, so a
  group kill alone would leave them), TERM first, KILL after a grace period.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from base64 import urlsafe_b64encode
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile.airflow"
HELM_VALUES = REPO / "docker" / "helm" / "values.yaml"
IMAGE_HOME = "/opt/airflow"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def _instructions(dockerfile: Path) -> list[list[str]]:
    text = dockerfile.read_text().replace("\\\n", " ")
    return [ln.split() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def image_layout(dockerfile: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``(source in the repo, path under AIRFLOW_HOME)`` of every COPY into the image's Airflow home."""
    out = []
    for words in _instructions(dockerfile):
        if words[0] != "COPY" or any(w.startswith("--from=") for w in words):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        *sources, dest = args
        if dest == IMAGE_HOME or dest.startswith(IMAGE_HOME + "/"):
            rel = dest[len(IMAGE_HOME):].strip("/")
            for src in sources:
                out.append((src, rel if len(sources) == 1 else f"{rel}/{Path(src).name}"))
    return out


def image_env(dockerfile: Path = DOCKERFILE) -> dict[str, str]:
    """The image's ``ENV`` settings (``KEY=value`` form), in order."""
    env = {}
    for words in _instructions(dockerfile):
        if words[0] == "ENV":
            env.update(w.split("=", 1) for w in words[1:] if "=" in w)
    return env


def helm_env(values: Path = HELM_VALUES) -> dict[str, str]:
    return {e["name"]: e["value"] for e in yaml.safe_load(values.read_text())["env"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DeploymentError(RuntimeError):
    """The deployment did not reach the state a check waited for (the message says which)."""


class Deployment:
    """One Airflow deployment under ``root`` (a fresh temporary folder)."""

    def __init__(self, root: Path, extra_env: dict[str, str] | None = None):
        self.root = Path(root)
        self.home = self.root / "airflow"
        self.store = self.root / "store"
        self.logs = self.root / "component-logs"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.started_at: float | None = None
        self._token: str | None = None
        self.env = self._environment(extra_env or {})

    # -- set-up ------------------------------------------------------------------------------------

    def _environment(self, extra: dict[str, str]) -> dict[str, str]:
        # nothing of the calling process's Airflow or pipeline settings (tests/conftest.py sets some)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AIRFLOW", "LEADER360V_", "_AIRFLOW")) and k != "PYTHONPATH"}
        env.update({k: v.replace(IMAGE_HOME, str(self.home)) for k, v in image_env().items()})
        env.update({
            "AIRFLOW_HOME": str(self.home),
            # the image's defaults, said explicitly: the same folders the image copies into
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.home / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.home / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__AUTH_MANAGER":
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__CORE__FERNET_KEY": urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            # re-parse a file 5 s after its last parse (default 30 s), so a flipped execution-mode
            # Variable shows within seconds; the dag-processor still parses each file in a child
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "LEADER360V_STORE": str(self.store),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "GX_ANALYTICS_ENABLED": "False",
            "TQDM_DISABLE": "1",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        })
        env.update(extra)
        return env

    def lay_out(self) -> None:
        """Replay the image's COPY lines into the Airflow home (``__pycache__`` left out)."""
        self.home.mkdir(parents=True)
        self.store.mkdir(parents=True)
        self.logs.mkdir(parents=True)
        for src, rel in image_layout():
            source, dest = REPO / src, self.home / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                                dirs_exist_ok=True)
            else:
                shutil.copy2(source, dest)

    def airflow(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([AIRFLOW, *args], env=self.env, cwd=self.root, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise DeploymentError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
                                  f"\n{proc.stderr[-3000:]}")
        return proc

    def init(self) -> None:
        """What compose's airflow-init and the Helm values' migration job run."""
        self.airflow("db", "migrate")
        self.airflow("pools", "import", str(self.home / "leader360v" / "pools.json"))

    def start(self) -> None:
        """The four components as separate processes (after :meth:`init`)."""
        self.started_at = time.monotonic()
        for name in COMPONENTS:
            # one api-server worker: each of the default 4 loads the whole app (~1 min to start on 2 busy cores)
            args = [name] + (["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
                             if name == "api-server" else [])
            with open(self.logs / f"{name}.log", "wb") as log:   # the child keeps its own descriptor
                self.procs[name] = subprocess.Popen([AIRFLOW, *args], env=self.env, cwd=self.root, stdout=log,
                                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                    start_new_session=True)

    def start_standalone(self) -> None:
        """``airflow standalone``: creates the database itself, then runs the same four components
        (as threads' subprocesses) on ``[api] host``/``port``."""
        self.env.update(AIRFLOW__API__HOST="127.0.0.1", AIRFLOW__API__PORT=str(self.port))
        self.started_at = time.monotonic()
        with open(self.logs / "standalone.log", "wb") as log:
            self.procs["standalone"] = subprocess.Popen([AIRFLOW, "standalone"], env=self.env, cwd=self.root,
                                                        stdout=log, stderr=subprocess.STDOUT,
                                                        stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self, grace: float = 20.0) -> None:
        """End every process this deployment started, by id: the components and all their children."""
        tree: list[psutil.Process] = []
        for proc in self.procs.values():
            try:
                root = psutil.Process(proc.pid)
                tree += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        for p in tree:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(tree, timeout=grace)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def exited(self) -> dict[str, int]:
        return {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}

    def component_logs(self, tail: int = 6000) -> str:
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace")
            parts.append(f"===== {path.stem} (last {tail} chars) =====\n{text[-tail:]}")
        return "\n".join(parts)

    def task_logs(self, dag_id: str, run_id: str, tail: int = 4000) -> str:
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
        parts = []
        for path in sorted(folder.rglob("*.log")) if folder.is_dir() else []:
            parts.append(f"===== {path.relative_to(folder)} =====\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    # -- REST API ----------------------------------------------------------------------------------

    def _check_alive(self) -> None:
        if dead := self.exited():
            raise DeploymentError(f"component(s) exited: {dead}")

    def wait_for(self, what: str, probe, timeout: float, every: float = 1.0):
        """Call ``probe()`` until it returns something truthy; raise after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            self._check_alive()
            try:
                last = probe()
            except (httpx.HTTPError, OSError) as exc:
                last = exc
            else:
                if last:
                    return last
            if time.monotonic() > deadline:
                raise DeploymentError(f"timed out after {timeout:.0f} s waiting for {what}; last answer: {last!r}")
            time.sleep(every)

    def password(self) -> str:
        path = self.home / "simple_auth_manager_passwords.json.generated"
        return json.loads(path.read_text())["admin"]

    def token(self) -> str:
        if self._token is None:
            r = httpx.post(f"{self.url}/auth/token", json={"username": "admin", "password": self.password()},
                           timeout=30)
            r.raise_for_status()
            self._token = r.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, **kw) -> httpx.Response:
        r = httpx.request(method, f"{self.url}/api/v2{path}", headers={"Authorization": f"Bearer {self.token()}"},
                          timeout=60, **kw)
        if r.status_code >= 400:
            raise DeploymentError(f"{method} {path}: HTTP {r.status_code}: {r.text[:2000]}")
        return r

    def get(self, path: str, **params) -> Any:
        return self.request("GET", path, params=params or None).json()

    def health(self) -> dict:
        return httpx.get(f"{self.url}/api/v2/monitor/health", timeout=10).json()

    def healthy(self) -> dict | None:
        """Every component's heartbeat is healthy (the api-server's monitor endpoint)."""
        h = self.health()
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return h if all((h.get(p) or {}).get("status") == "healthy" for p in parts) else None

    def dags(self) -> dict[str, dict]:
        return {d["dag_id"]: d for d in self.get("/dags", limit=100)["dags"]}

    def import_errors(self) -> list[dict]:
        return self.get("/importErrors", limit=100)["import_errors"]

    def plugin_import_errors(self) -> list[dict]:
        return self.get("/plugins/importErrors")["import_errors"]

    def plugins(self) -> list[dict]:
        return self.get("/plugins", limit=100)["plugins"]

    def tasks(self, dag_id: str) -> dict[str, dict]:
        return {t["task_id"]: t for t in self.get(f"/dags/{dag_id}/tasks")["tasks"]}

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def set_variable(self, key: str, value: str) -> None:
        try:
            self.request("PATCH", f"/variables/{key}", json={"key": key, "value": value})
        except DeploymentError:
            self.request("POST", "/variables", json={"key": key, "value": value})

    def trigger(self, dag_id: str, run_id: str, conf: dict) -> dict:
        return self.request("POST", f"/dags/{dag_id}/dagRuns",
                            json={"dag_run_id": run_id, "logical_date": None, "conf": conf}).json()

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}")

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns", limit=100)["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=1000)["task_instances"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict:
        def done():
            run = self.run(dag_id, run_id)
            return run if run["state"] in ("success", "failed") else None

        return self.wait_for(f"{dag_id} run {run_id} to finish", done, timeout, every=2.0)


def upload_clip(deployment: Deployment, key: str, seconds: float = 1.0) -> Path:
    """A tiny synthetic 360° clip (256x128), uploaded to the deployment's store with the CLI."""
    out = deployment.root / "clip"
    env = {k: v for k, v in deployment.env.items()}
    for cmd in (["synth", "--out", str(out), "--seconds", str(seconds), "--fps", "8", "--width", "256",
                 "--seed", "1"],
                ["upload", str(out / "clip.mp4"), "--key", key]):
        proc = subprocess.run([sys.executable, "-m", "tasks", *cmd], env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=300)
        if proc.returncode != 0:
            raise DeploymentError(f"python -m tasks {cmd[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return out / "clip.mp4"


def operator_names(tasks: dict[str, dict]) -> dict[str, str]:
    return {tid: t["operator_name"] for tid, t in tasks.items()}


STAGE_TASK = re.compile(r"^video\.(\w+)$")
