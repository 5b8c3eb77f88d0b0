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

from airflow.plugins_manager import AirflowPlugin

# imported for its failure: a package that does not import is this plugin's import error
import leader360v_airflow.settings  # noqa: F401


class Leader360vPlugin(AirflowPlugin):
    """Registers the package; stage tasks are built by the DAG files (``leader360v_airflow``)."""

    name = "leader360v"
