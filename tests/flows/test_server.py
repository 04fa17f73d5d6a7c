"""flows/crashes.py: a run that a termination signal ended is Crashed (signals are in tests/e2e)."""

from __future__ import annotations

import signal
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.exceptions import TerminationSignal

from flows.crashes import crashed_if_terminated, mark_crashed, terminated


def _task_creation_interrupted() -> None:
    """What Prefect 3.9's task engine does when SIGTERM lands while a task run is created: its
    crash handler reads the state of a task run that does not exist yet."""
    try:
        raise TerminationSignal(signal=signal.SIGTERM)
    except TerminationSignal:
        raise ValueError("Task run is not set")  # noqa: B904 (implicit chaining, as Prefect's)


@flow(name="hidden-interrupt", on_failure=[crashed_if_terminated])
def _interrupted_while_a_task_is_created() -> None:
    _task_creation_interrupted()


@flow(name="plain-failure", on_failure=[crashed_if_terminated])
def _fails() -> None:
    raise ValueError("a bad row")


def _state_name(flow_run_id: str) -> str:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
    assert state is not None
    return state.name


def test_terminated_looks_through_the_context_chain() -> None:
    with pytest.raises(ValueError, match="Task run is not set") as hidden:
        _task_creation_interrupted()
    assert terminated(hidden.value)
    assert not terminated(ValueError("a bad row"))
    assert not terminated(None)


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_a_signal_ended_failed_is_crashed_and_a_plain_failure_stays_failed() -> None:
    hidden = _interrupted_while_a_task_is_created(return_state=True)
    assert _state_name(str(hidden.state_details.flow_run_id)) == "Crashed"
    plain = _fails(return_state=True)
    assert _state_name(str(plain.state_details.flow_run_id)) == "Failed"


@pytest.mark.usefixtures("prefect_harness")
def test_mark_crashed_leaves_an_ended_run_unless_told_it_hid_a_signal() -> None:
    state = _fails(return_state=True)
    flow_run_id = str(state.state_details.flow_run_id)
    # a run that ended is left as it ended (the resuming run's correction of kill -9)...
    assert mark_crashed(flow_run_id) is None
    assert _state_name(flow_run_id) == "Failed"
    # ...unless its failure only hid a signal
    assert mark_crashed(flow_run_id, "interrupted by SIGTERM", replace_failed=True) == flow_run_id
    assert _state_name(flow_run_id) == "Crashed"
