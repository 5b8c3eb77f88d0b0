"""The DAG files in kubernetes mode: same graph as local mode, every stage a pod, valid pod specs.

DAGs are loaded in a fresh interpreter per mode (the mode is read once per process, as in the
dag-processor), with the Airflow home prepared by tests/conftest.py. The slow test runs the
nightly DAG end to end in kubernetes mode with each pod replaced by an in-process run of the pod's
own command line, so the mapped wiring (upstream XCom -> next pod's arguments), the exit-code
mapping and the manifest handed to ``publish_ready`` are exercised without a cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
STAGES = ["ingest", "decode", "propose", "verify", "sdr", "propagate", "refine", "qa", "validate"]
GPU_STAGES = {"propose", "verify", "propagate"}  # refine is an id-map post-pass since #10
HEAVY = ["torch", "cv2", "great_expectations", "skimage", "sklearn", "transformers", "sentence_transformers",
         "pycocotools", "sam2", "scipy", "pandas"]
SAMPLE = {"key": "raw/2026-11-24/clip.mp4", "video_id": "0123456789abcdef", "run": "0123456789ab"}

PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.perf_counter() - t0
heavy = [m for m in json.loads(sys.argv[2]) if m in sys.modules]
provider = "airflow.providers.cncf.kubernetes.operators.pod" in sys.modules
from airflow.serialization.serialized_objects import DagSerialization
sample = json.loads(sys.argv[3])
out = {"errors": {k: v[-800:] for k, v in bag.import_errors.items()}, "seconds": seconds, "heavy": heavy,
       "provider_imported": provider, "dags": {}, "pods": {}}
for dag_id, dag in bag.dags.items():
    DagSerialization.to_dict(dag)  # what the dag-processor stores must serialize
    tasks = {}
    for t in dag.tasks:
        tasks[t.task_id] = {
            "type": type(t).__name__, "upstream": sorted(t.upstream_task_ids), "pool": t.pool,
            "pool_slots": t.pool_slots, "retries": t.retries, "map_index_template": t.map_index_template,
            "executor_config": sorted(t.executor_config or {}),
        }
        if type(t).__name__ == "StagePodOperator":
            # resolve the upstream XComArgs as the worker would, then build the pod it would create
            def value(a):
                if not hasattr(a, "resolve"):
                    return a
                return sample[getattr(a, "key", "key")] if getattr(a, "key", "return_value") != "return_value" else sample["key"]
            tasks[t.task_id]["arguments"] = [a if not hasattr(a, "resolve") else "<" + getattr(a, "key", "mapped") + ">"
                                             for a in t.arguments]
            t.arguments = [value(a) for a in t.arguments]
            from kubernetes.client import ApiClient
            out["pods"][f"{dag_id}/{t.task_id}"] = ApiClient().sanitize_for_serialization(
                t.build_pod_request_obj(context=None, dry_run=True))
    out["dags"][dag_id] = {"tasks": tasks, "params": sorted(dag.params), "groups": sorted(dag.task_group_dict)}
print(json.dumps(out))
"""


def load(mode: str | None = None, variable: str | None = None, extra_env: dict | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "plugins"), str(REPO)]))
    for name in ("LEADER360V_EXECUTION", "AIRFLOW_VAR_LEADER360V_EXECUTION", "LEADER360V_K8S_CONFIG",
                 "LEADER360V_TASK_IMAGE"):
        env.pop(name, None)
    if mode:
        env["LEADER360V_EXECUTION"] = mode
    if variable:
        env["AIRFLOW_VAR_LEADER360V_EXECUTION"] = variable
    env.update(extra_env or {})
    proc = subprocess.run([sys.executable, "-c", PROBE, str(DAGS), json.dumps(HEAVY), json.dumps(SAMPLE)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["errors"] == {}, out["errors"]
    return out


@pytest.fixture(scope="module")
def local():
    return load()


@pytest.fixture(scope="module")
def kube():
    return load("kubernetes")


def shape(out: dict) -> dict:
    """Everything that must not depend on the mode."""
    return {dag_id: {"params": d["params"], "groups": d["groups"],
                     "tasks": {t: (v["upstream"], v["retries"], v["map_index_template"]) for t, v in d["tasks"].items()}}
            for dag_id, d in out["dags"].items()}


def test_graph_task_ids_and_params_are_identical_in_both_modes(local, kube):
    assert set(local["dags"]) == {"leader360v_nightly", "leader360v_release", "leader360v_revise"}
    assert shape(local) == shape(kube)


def test_every_stage_is_a_pod_with_its_table_row(kube):
    table = yaml.safe_load((REPO / "plugins" / "leader360v_airflow" / "resources.yaml").read_text())
    tasks = kube["dags"]["leader360v_nightly"]["tasks"]
    for stage in STAGES:
        t = tasks[f"video.{stage}"]
        assert t["type"] == "StagePodOperator"
        assert t["pool"] == ("gpu" if stage in GPU_STAGES else "default_pool")
        pod = kube["pods"][f"leader360v_nightly/video.{stage}"]
        base = pod["spec"]["containers"][0]
        row = table["stages"][stage]
        assert base["resources"] == {"requests": row["requests"], "limits": row["limits"]}
        assert ("nvidia.com/gpu" in base["resources"]["limits"]) == (stage in GPU_STAGES)
        assert bool(pod["spec"].get("tolerations")) == (stage in GPU_STAGES)
    # the pods of one video are chained through the upstream pod's XCom keys, not helper tasks
    assert tasks["video.ingest"]["arguments"][:3] == ["ingest", "--key", "<mapped>"]
    assert tasks["video.decode"]["arguments"][:5] == ["decode", "--video-id", "<video_id>", "--run", "<run>"]
    others = {name: t["type"] for name, t in tasks.items() if not name.startswith("video.")}
    # the human gate (issue 15) waits in Airflow itself (no pod, no worker slot), one per flagged video
    assert others.pop("review_gate") == "MappedOperator" and others.pop("record_approval") == "DecoratedMappedOperator"
    assert set(others.values()) == {"_PythonDecoratedOperator"}
    # the release DAG's tasks stay worker tasks, sized for the KubernetesExecutor
    for name, t in kube["dags"]["leader360v_release"]["tasks"].items():
        assert t["executor_config"] == ["pod_override"], name


def test_local_mode_has_no_pod_and_never_imports_the_provider(local):
    types = {t["type"] for d in local["dags"].values() for name, t in d["tasks"].items()
             if name not in ("review_gate", "record_approval", "revise")}   # issue 15: mapped per video
    assert types == {"_PythonDecoratedOperator"}
    assert local["pods"] == {} and local["provider_imported"] is False
    assert all(t["executor_config"] == [] for t in local["dags"]["leader360v_release"]["tasks"].values())


def test_kubernetes_mode_parsing_stays_light(kube):
    assert kube["heavy"] == []
    assert kube["seconds"] < 15


def test_the_airflow_variable_switches_the_mode():
    out = load(mode="local", variable="kubernetes")
    assert out["dags"]["leader360v_nightly"]["tasks"]["video.propagate"]["type"] == "StagePodOperator"


@pytest.mark.parametrize("version", ["1.31.0", "1.37.0"])
def test_every_pod_the_dags_build_validates(kube, version):
    assert len(kube["pods"]) == len(STAGES)
    for name, pod in kube["pods"].items():
        try:
            kubernetes_validate.validate(pod, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {exc.message}")


# -- end to end, pods simulated --------------------------------------------------------------------

FAKE_RUN = r'''
"""`airflow dags test` in kubernetes mode, each stage pod replaced by its own command line run
in-process; the pod spec is still built from the real task context and saved for validation."""
import json, os, sys
from pathlib import Path

from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from leader360v_airflow import pod_tasks as kube

OUT = Path(os.environ["FAKE_PODS_OUT"])


def execute_sync(self, context):
    from tasks.cli import main as cli

    pod = self.build_pod_request_obj(context, dry_run=True)
    ti = context["ti"]
    name = f"{ti.task_id}.{ti.map_index}.{ti.try_number}"
    (OUT / f"{name}.pod.json").write_text(json.dumps(ApiClient().sanitize_for_serialization(pod)))
    xcom = OUT / f"{name}.xcom.json"
    args = [str(xcom) if a == kube.XCOM_FILE else a for a in pod.spec.containers[0].args]
    code = cli(args)
    with open(OUT / "calls.jsonl", "a") as fh:
        fh.write(json.dumps({"task": ti.task_id, "map_index": ti.map_index, "try": ti.try_number,
                             "args": args, "exit": code}) + "\n")
    remote = k8s.V1Pod(metadata=pod.metadata, status=k8s.V1PodStatus(
        phase="Succeeded" if code == 0 else "Failed",
        container_statuses=[k8s.V1ContainerStatus(
            name="base", image=self.image, image_id="", ready=False, restart_count=0,
            state=k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=code)))]))
    self.remote_pod = remote
    result = json.loads(xcom.read_text()) if code == 0 else None
    self.post_complete_action(pod=pod, remote_pod=remote, context=context, result=result)  # -> cleanup()
    return result


kube.StagePodOperator.execute_sync = execute_sync
for name in ("process_pod_deletion", "patch_already_checked", "_read_pod_container_states", "_read_pod_events",
             "is_istio_enabled"):
    setattr(kube.StagePodOperator, name, lambda self, *a, **k: None)

from airflow.__main__ import main  # noqa: E402

sys.argv = ["airflow", *sys.argv[1:]]
sys.exit(main())
'''


@pytest.mark.slow
@pytest.mark.airflow
def test_nightly_runs_in_kubernetes_mode_with_simulated_pods(airflow_db, tiny_clip, tmp_path):
    from tasks.config import PipelineConfig
    from tasks.storage import LocalStore

    store = LocalStore(tmp_path / "store")
    store.put_file("raw/k/clip.mp4", tiny_clip / "clip.mp4")
    store.put_file("raw/k/dup.mp4", tiny_clip / "clip.mp4")
    (tmp_path / "notes.mp4").write_text("not a video")
    store.put_file("raw/k/notes.mp4", tmp_path / "notes.mp4")
    out = tmp_path / "pods"
    out.mkdir()
    script = tmp_path / "fake_run.py"
    script.write_text(FAKE_RUN)
    env = dict(os.environ, LEADER360V_EXECUTION="kubernetes", LEADER360V_STORE=str(store.root),
               FAKE_PODS_OUT=str(out), PYTHONPATH=os.pathsep.join([str(REPO / "plugins"), str(REPO)]),
               # discover checks the connection that starts the pods exists (as the Helm values set it)
               AIRFLOW_CONN_KUBERNETES_DEFAULT=json.dumps({"conn_type": "kubernetes", "extra": {"in_cluster": True}}))
    overrides = {"refine.tau": 0.004}
    proc = subprocess.run([sys.executable, str(script), "dags", "test", "leader360v_nightly", "-c",
                           json.dumps({"prefix": "raw/k/", "config_overrides": overrides})],
                          capture_output=True, text=True, env=env, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    finished = [ln for ln in log.splitlines() if "DagRun Finished" in ln]
    assert finished and "state=success" in finished[-1], log[-4000:]
    calls = [json.loads(ln) for ln in (out / "calls.jsonl").read_text().splitlines()]
    by_key = {}
    for c in calls:
        if c["task"] == "video.ingest":
            by_key.setdefault(c["args"][2], []).append(c)
    # rejected (quarantined) and duplicate uploads: one pod each, no retry; which of the two
    # identical uploads is the duplicate depends on which pod ran first
    assert [c["exit"] for c in by_key["raw/k/notes.mp4"]] == [3]
    assert sorted(c["exit"] for k in ("raw/k/clip.mp4", "raw/k/dup.mp4") for c in by_key[k]) == [0, 4]
    # the good upload went through every stage, each pod fed by the previous pod's XCom
    (good, ingest), = [(k, by_key[k][0]) for k in ("raw/k/clip.mp4", "raw/k/dup.mp4") if by_key[k][0]["exit"] == 0]
    index = ingest["map_index"]
    chain = [c for c in calls if c["map_index"] == index]
    assert [c["task"] for c in chain] == [f"video.{s}" for s in STAGES] and {c["exit"] for c in chain} == {0}
    run = PipelineConfig().with_overrides(overrides).hash          # the hash local mode would use
    video_id = json.loads((out / f"video.ingest.{index}.1.xcom.json").read_text())["video_id"]
    for c in chain[1:]:
        assert c["args"][1:5] == ["--video-id", video_id, "--run", run]
    # publish_ready saw the same rows as in local mode
    assert f"| `{good}` | {video_id} | ready | run {run} |" in log
    assert "| `raw/k/notes.mp4` |" in log and "| quarantined | not_a_video at ingest: " in log
    assert "Every upload is accounted for: 1 ready, 1 quarantined, 1 duplicate." in log
    # the pod tasks are named by their upload in the UI too (map_index_template renders)
    import sqlite3

    with sqlite3.connect(os.path.join(os.environ["AIRFLOW_HOME"], "airflow.db")) as con:
        [(run_id,)] = con.execute("select run_id from dag_run where dag_id = 'leader360v_nightly' "
                                  "order by id desc limit 1").fetchall()
        labels = con.execute("select task_id, map_index, rendered_map_index from task_instance "
                             "where run_id = ? and task_id like 'video.%'", (run_id,)).fetchall()
    assert {label for t, _, label in labels if t == "video.ingest"} == {"raw/k/clip.mp4", "raw/k/dup.mp4",
                                                                          "raw/k/notes.mp4"}
    assert {label for t, m, label in labels if m == index} == {good}
    # every pod the run built (with its task-instance labels) is a valid Kubernetes object
    for path in out.glob("*.pod.json"):
        pod = json.loads(path.read_text())
        kubernetes_validate.validate(pod, "1.37.0", strict=True)
        assert pod["metadata"]["labels"]["dag_id"] == "leader360v_nightly"
