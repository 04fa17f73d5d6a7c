"""A person for close calls: pause the flow run with the evidence, record who answered and how.

With `approval="ask"`, a newcomer in the grey zone (ahead but not significantly, or passing near
a guardrail) is registered as a challenger whose decision "waits for a person". The flow then
emits `mnistnn.promotion.waiting` (resource `mnistnn.model.<version>`, for a notification) and
pauses with `pause_flow_run(wait_for_input=PromotionAnswer)`: the UI's form shows the evidence
and offers approve or reject with a comment. The answer, or its absence after the timeout (the
newcomer then stays a challenger), goes to the registry's history and the version's meta.json.
"""

from __future__ import annotations

import getpass
from typing import Any, Literal

from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from flows import events
from flows.tasks import run_logger
from mnistnn.registry.gate import WAITS
from mnistnn.registry.store import ModelRegistry
from mnistnn.report.promotion import section

PROMOTION_WAITING = "mnistnn.promotion.waiting"


class PromotionAnswer(RunInput):
    """The form of a paused close call."""

    decision: Literal["approve", "reject"] = Field(
        description="approve: the newcomer becomes champion; reject: it stays a challenger"
    )
    by: str = Field(default="", description="your name (recorded in the champion's history)")
    comment: str = Field(default="", description="why (recorded with the decision)")


def waits_for_person(decision: dict[str, Any] | None) -> bool:
    """Whether the registry left this decision to a person (approval=ask, a close call)."""
    return bool(decision) and str(decision.get("reason", "")).endswith(WAITS)  # type: ignore[union-attr]


def _running_again() -> None:
    """Put this paused flow run back in Running, so that it may go on and complete."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run
    from prefect.states import Running

    run_id = flow_run.get_id()
    assert run_id is not None  # only ever called inside a flow run
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, Running(), force=True)


def ask_person(models_dir: str, decision: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Pause until a person answers (or `timeout` seconds pass); return the recorded decision."""
    logger = run_logger()
    version = decision["version"]
    events.emit(
        PROMOTION_WAITING,
        {"prefect.resource.id": f"mnistnn.model.{version}", "prefect.resource.name": version},
        {
            "version": version,
            "reason": decision["reason"],
            "champion": decision["champion_version"],
        },
    )
    logger.info("close call, waiting for a person (up to %gs): %s", timeout, decision["reason"])
    form = PromotionAnswer.with_initial_data(
        description=section(decision), decision="reject", by=getpass.getuser()
    )
    seconds = max(1, round(timeout))
    try:
        answer = pause_flow_run(
            wait_for_input=form, timeout=seconds, poll_interval=2 if seconds < 120 else 10
        )
    except FlowPauseTimeout:
        answer = None
        _running_again()  # else the server fails the run: "completed and never resumed"
    registry = ModelRegistry(models_dir)
    if answer is None:
        recorded = registry.answer(
            version,
            approved=None,
            actor="nobody",
            comment=f"no answer within {seconds}s: stays a challenger",
            compared_with=decision["champion_version"],
        )
    else:
        recorded = registry.answer(
            version,
            approved=answer.decision == "approve",
            actor=answer.by or "unknown",
            comment=answer.comment,
            compared_with=decision["champion_version"],
        )
    logger.info("close call on %s: %s", version, recorded.approval)
    return recorded.to_dict()
