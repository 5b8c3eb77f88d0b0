"""The nightly DAG's human gate (issue 15 §4): Airflow's ``ApprovalOperator`` that records the
person's answer in the store.

Airflow's ``ApprovalOperator`` (apache-airflow-providers-standard, operators/hitl.py) waits for
Approve or Reject without a worker slot (Airflow 3.3: the task parks in ``awaiting_input``) and
resumes in ``execute_complete`` with the response: ``chosen_options``, ``params_input`` (the
values of the form fields given as ``params``), ``responded_by_user`` (``{"id", "name"}``) and
``responded_at``. On Reject it then *skips* its downstream tasks (for a mapped gate through the
``skipmixin_key`` XCom), so no downstream task could record a rejection: before this class, Reject
recorded nothing and the ops dashboard never showed ``rejected``.

:class:`ReviewGateOperator` records either answer first, in ``execute_complete`` -- the one place
that sees both -- as ``reviews/{video_id}/{run}/decision.json`` (tasks/review/approval.py
``record_decision``: who, when, and the reviewer's comment from the form's ``comment`` field),
then lets ``ApprovalOperator`` do the rest (Approve: downstream runs; Reject: downstream skipped,
so no asset event announces the video). A response Airflow reports as an error (a timeout) records
nothing and fails as ``ApprovalOperator`` does.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param

COMMENT = "comment"


def comment_form() -> dict[str, Param]:
    """The gate's one form field: the reviewer's reason, shown on the ops dashboard."""
    return {COMMENT: Param("", type="string", title="Comment",
                           description="Why (required in practice on Reject: the ops dashboard and the "
                                       "release log show it to whoever corrects the labels).")}


def responder(user: Any) -> str | None:
    """The name Airflow gives the responding user (``{"id", "name"}``; older versions: a string)."""
    if isinstance(user, dict):
        return user.get("name") or user.get("id") or None
    return str(user) if user else None


class ReviewGateOperator(ApprovalOperator):
    """``ApprovalOperator`` for one run of one video that records the answer in the store.

    :param video_id: the video the person reviews.
    :param run: its run (configuration hash).
    """

    def __init__(self, *, video_id: str, run: str, **kwargs) -> None:
        kwargs.setdefault("params", comment_form())
        super().__init__(**kwargs)
        self.video_id = video_id
        self.run = run

    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        if "error" not in event:
            self.validate_chosen_options(event["chosen_options"])
            self.record(event)
        return super().execute_complete(context=context, event=event)

    def record(self, event: dict[str, Any]) -> dict:
        from leader360v_airflow import settings
        from tasks.review.approval import record_decision

        at = event.get("responded_at")
        note = (event.get("params_input") or {}).get(COMMENT)
        rec = record_decision(settings.store(), self.video_id, self.run,
                              approved=event["chosen_options"][0] == self.APPROVE,
                              by=responder(event.get("responded_by_user")),
                              at=at.isoformat() if hasattr(at, "isoformat") else (str(at) if at else None),
                              note=note if isinstance(note, str) else None)
        self.log.info("video %s run %s %s by %s at %s%s", self.video_id, self.run, rec["decision"], rec["by"],
                      rec["at"], f": {rec['note']}" if rec["note"] else "")
        return rec
