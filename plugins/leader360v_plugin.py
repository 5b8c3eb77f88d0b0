"""The pipeline's Airflow plugin: ``leader360v`` in ``airflow plugins`` and Admin -> Plugins.

Airflow imports every ``.py`` file of the plugins folder as a top-level module named after the
file, so this folder holds exactly one such file -- this one, named after nothing installed --
and ``.airflowignore`` keeps the ``leader360v_airflow`` package out of that walk (issue 11). The
package is imported here the normal way (the plugins folder is on ``sys.path`` in every Airflow
process), so a package that does not import shows up as this plugin's import error in every
component -- Admin -> Plugins, ``airflow plugins``, ``GET /api/v2/plugins/importErrors`` --
instead of only as a DAG import error.

Only the light modules are imported: the plugin is loaded by every Airflow process, and
``pod_tasks`` (the Kubernetes client and the cncf provider, ~1 s) is imported by the DAG files
only in kubernetes mode.
"""

from __future__ import annotations

import functools

from airflow.plugins_manager import AirflowPlugin

# imported for its failure: a package that does not import is this plugin's import error
import leader360v_airflow.settings  # noqa: F401


@functools.cache
def _dashboard_app():
    """The ops dashboard app (issue 14), built once per process that asks for the plugin's apps
    (the api-server; ``airflow plugins`` lists it): the scheduler, the dag-processor and task
    processes never import FastAPI or the dashboard for it. The store is opened on the first request,
    so a store that is down never stops the api-server from starting (the pages show a banner)."""
    from leader360v_airflow.dashboard.app import URL_PREFIX, create_app

    return {"app": create_app(), "url_prefix": URL_PREFIX, "name": "leader360v ops dashboard"}


# Relative hrefs (no leading slash): the UI resolves them against its base URL, so the views work
# when Airflow is served under a sub-path [docs/reference/airflow3_notes.md §1 "Plugins and dashboards"].
# {DAG_ID}/{RUN_ID}/{TASK_ID}/{MAP_INDEX} are filled in by the UI for the non-nav destinations.
# Airflow 3.3 has no asset destination; a release is reached from its release-DAG run instead.
EXTERNAL_VIEWS = [
    {"name": "Ops dashboard", "href": "leader360v/", "destination": "nav", "url_route": "leader360v-ops",
     "category": "browse"},
    {"name": "Videos of this run", "href": "leader360v/runs/{DAG_ID}/{RUN_ID}", "destination": "dag_run",
     "url_route": "leader360v-run"},
    {"name": "Video page", "href": "leader360v/tasks/{DAG_ID}/{RUN_ID}/{TASK_ID}/{MAP_INDEX}",
     "destination": "task_instance", "url_route": "leader360v-video"},
]


class Leader360vPlugin(AirflowPlugin):
    """Registers the package and the ops dashboard; stage tasks are built by the DAG files."""

    name = "leader360v"
    external_views = EXTERNAL_VIEWS

    @property
    def fastapi_apps(self):  # type: ignore[override]
        return [_dashboard_app()]
