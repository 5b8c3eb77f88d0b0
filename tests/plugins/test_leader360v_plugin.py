"""The plugins folder as Airflow's plugin manager sees it (issue 11).

The plugin manager walks the folder, honouring ``.airflowignore``, and imports every ``.py`` it
finds as a top-level module named after the file -- in every Airflow process. A file named like a
library (``kubernetes.py``) replaced that library for the whole process; the package's own modules
were imported twice. These tests use Airflow's own walk and loader.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from airflow._shared.module_loading import find_path_from_directory

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "plugins"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def walked(syntax: str) -> list[str]:
    return sorted(Path(p).relative_to(PLUGINS).as_posix()
                  for p in find_path_from_directory(PLUGINS, ".airflowignore", syntax)
                  if p.endswith(".py"))


@pytest.mark.parametrize("syntax", ["glob", "regexp"])   # [core] dag_ignore_file_syntax, either value
def test_the_plugin_manager_walks_one_module(syntax):
    assert walked(syntax) == ["leader360v_plugin.py"]


def test_no_plugin_module_shadows_an_installed_module():
    """Every module the walk imports gets a top-level name; nothing installed may already own it."""
    for rel in walked("glob"):
        name = Path(rel).stem
        spec = importlib.util.find_spec(name)
        assert spec is None or Path(spec.origin) == PLUGINS / rel, f"plugins/{rel} would shadow {spec.origin}"


def test_the_package_is_left_out_of_the_walk_but_importable():
    package = PLUGINS / "leader360v_airflow"
    assert (package / "__init__.py").is_file()
    assert not any(p.startswith("leader360v_airflow/") for p in walked("glob"))


def _airflow_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__PLUGINS_FOLDER=str(PLUGINS),
               AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    return env


def test_airflow_plugins_lists_leader360v_with_no_error(tmp_path):
    """What ``airflow plugins`` prints, and the import errors Admin -> Plugins would show."""
    out = subprocess.run([AIRFLOW, "plugins", "-o", "json"], env=_airflow_env(tmp_path), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    listed = json.loads(out.stdout[out.stdout.index("["):])
    assert [p["name"] for p in listed] == ["leader360v"]
    assert listed[0]["source"] == "$PLUGINS_FOLDER/leader360v_plugin.py"
    assert "Failed to import plugin" not in out.stdout + out.stderr

    probe = ("import json, sys; from airflow import plugins_manager as pm; pm.ensure_plugins_loaded(); "
             "print(json.dumps({'errors': pm.get_import_errors(), 'modules': sorted(m for m in "
             "('settings', 'stage_tasks', 'pod_tasks', 'kubernetes', '__init__', 'leader360v_airflow') "
             "if m in sys.modules and str(getattr(sys.modules[m], '__file__', '')).startswith(sys.argv[1]))}))")
    out = subprocess.run([sys.executable, "-c", probe, str(PLUGINS)], env=_airflow_env(tmp_path),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    # the package was imported once, under its own name; none of its files as a top-level module
    assert result["modules"] == ["leader360v_airflow"]


def test_a_broken_package_is_the_plugins_import_error(tmp_path):
    """The plugin imports the package, so a package that does not import shows in Admin -> Plugins."""
    plugins = tmp_path / "plugins"
    (plugins / "leader360v_airflow").mkdir(parents=True)
    (plugins / "leader360v_plugin.py").write_text((PLUGINS / "leader360v_plugin.py").read_text())
    (plugins / ".airflowignore").write_text((PLUGINS / ".airflowignore").read_text())
    (plugins / "leader360v_airflow" / "__init__.py").write_text("raise ImportError('broken on purpose')\n")
    env = _airflow_env(tmp_path)
    env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(plugins)
    probe = ("import json; from airflow import plugins_manager as pm; pm.ensure_plugins_loaded(); "
             "print(json.dumps(pm.get_import_errors()))")
    # the plugins folder comes first: the venv's editable install is only a fallback finder
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    errors = json.loads(out.stdout.strip().splitlines()[-1])
    assert list(errors) == [str(plugins / "leader360v_plugin.py")]
    assert "broken on purpose" in errors[str(plugins / "leader360v_plugin.py")]
