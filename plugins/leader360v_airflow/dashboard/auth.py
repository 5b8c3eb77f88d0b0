"""Who may see the dashboard: Airflow's own authorization, failing closed (issue 14).

Airflow does not authenticate a plugin's FastAPI app: every route of the dashboard depends on one
of the dependencies below, built from ``airflow.api_fastapi.core_api.security`` -- the same ones
Airflow's REST API uses. They read the user from a Bearer token or from the UI's login cookie
(``_token``), so the page embedded in the Airflow UI works with the operator's login.

* reading pipeline pages needs GET on the runs of the nightly DAG (what the pages show are its
  runs' results), release pages GET on the runs of the release DAG;
* releasing a quarantined video needs PUT on the nightly DAG's runs (it changes what the next
  run processes) -- a Viewer sees the quarantine but cannot release anything.

If those dependencies cannot be imported (an Airflow without them), every route answers 403
with the reason instead of serving pages to anyone.
"""

from __future__ import annotations

from fastapi import HTTPException, status

NIGHTLY_DAG = "leader360v_nightly"
RELEASE_DAG = "leader360v_release"

try:
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import get_user, requires_access_dag

    IMPORT_ERROR: str | None = None
except Exception as exc:  # noqa: BLE001 -- any failure to import means: nobody gets in
    IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

    def _deny():
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"the ops dashboard is disabled: Airflow's authorization cannot be imported ({IMPORT_ERROR})")

    def requires_access_dag(*_a, **_k):
        return _deny

    get_user = _deny
    DagAccessEntity = None  # type: ignore[assignment]

RUN = getattr(DagAccessEntity, "RUN", None)
read_pipeline = requires_access_dag("GET", RUN, NIGHTLY_DAG)
read_releases = requires_access_dag("GET", RUN, RELEASE_DAG)
edit_pipeline = requires_access_dag("PUT", RUN, NIGHTLY_DAG)
current_user = get_user


def user_name(user) -> str:
    """What the audit record of an action says about who did it."""
    for attr in ("get_name", "get_id"):
        fn = getattr(user, attr, None)
        if callable(fn):
            try:
                name = fn()
            except Exception:  # noqa: BLE001 -- fall through to the next way of naming the user
                continue
            if name:
                return f"airflow:{name}"
    return "airflow:unknown"
