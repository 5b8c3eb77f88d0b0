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

A retry of a gate whose answer is already recorded completes from the record without asking the
person again (:meth:`ReviewGateOperator.execute`): on Airflow 3.3 the scheduler can fail the
resumed gate on the stale executor event of its deferral after the person answered and the answer
was recorded ("finished with state success, but the task instance's state attribute is running":
apache/airflow#72716, #71580, open), which turned the nightly red after a Reject on a fresh
deployment; the nightly gives the gate one quick retry for this.
"""

from __future__ import annotations

import datetime as dt
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

    def execute(self, context) -> Any:
        answer = self.recorded()
        if answer is not None:
            self.log.info("video %s run %s already %s by %s at %s: not asking again", self.video_id, self.run,
                          answer["decision"], answer.get("by"), answer.get("at"))
            return super().execute_complete(context=context, event=_event_of(answer, self.APPROVE, self.REJECT))
        return super().execute(context)

    def recorded(self) -> dict | None:
        """The person's answer on this run already in the store, if any (the nightly requests the
        gate only for held runs: a decision there was given to this gate)."""
        from leader360v_airflow import settings
        from tasks.review.approval import decision

        return decision(settings.store(), self.video_id, self.run)

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


def _event_of(answer: dict, approve: str, reject: str) -> dict[str, Any]:
    """The resume event a recorded answer stands for (``ApprovalOperator.execute_complete``)."""
    from tasks.review.approval import APPROVED

    at = answer.get("at")
    try:
        when = dt.datetime.fromisoformat(at) if at else dt.datetime.now(dt.UTC)
    except ValueError:
        when = dt.datetime.now(dt.UTC)
    return {"chosen_options": [approve if answer["decision"] == APPROVED else reject],
            "params_input": {COMMENT: answer.get("note") or ""}, "responded_at": when,
            "responded_by_user": {"id": answer.get("by") or "unknown", "name": answer.get("by") or "unknown"}}
