"""A flow run that a termination signal ended is Crashed, whatever error the signal turned into."""

from __future__ import annotations

from typing import Any

from prefect.exceptions import TerminationSignal

SIGNAL_MESSAGE = "interrupted by SIGTERM"


def terminated(exc: BaseException | None) -> bool:
    """Whether a termination signal is `exc` or anywhere in the errors it was raised from.

    Prefect turns SIGTERM into `TerminationSignal`, and its engines mark the run Crashed when
    that reaches them. A signal landing while a task run is being created does not: the task
    engine's crash handler itself fails ("Task run is not set"), and that `ValueError`, raised
    while handling the signal, ends the flow run Failed. The signal stays in its context chain.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, TerminationSignal):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def crashed_if_terminated(flow: Any, flow_run: Any, state: Any) -> None:
    """on_failure hook of every flow: a run failed by a termination signal is set Crashed, so
    the crash automations re-run it (a Failed run is not re-run) and the UI says what happened."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception:  # no result to look at: leave the state as Prefect set it
        return
    if isinstance(error, BaseException) and terminated(error):
        mark_crashed(str(flow_run.id), SIGNAL_MESSAGE, replace_failed=True)


def mark_crashed(
    flow_run_id: str,
    message: str = "its process died (e.g. kill -9); resumed by a later run",
    *,
    replace_failed: bool = False,
) -> str | None:
    """Set the run Crashed unless it already ended (or, with `replace_failed`, ended other than
    Failed); the id when it was set, else None."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(flow_run_id))
            if run.state is None or (
                run.state.is_final() and not (replace_failed and run.state.is_failed())
            ):
                return None
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
    except Exception:  # another server's run, or the API refused: nothing to correct here
        return None
    return flow_run_id
