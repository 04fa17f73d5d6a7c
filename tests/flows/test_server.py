"""flows/server.py's correction of a run's final state (the signal paths are in tests/e2e)."""

from __future__ import annotations

from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client

from flows.server import _mark_crashed


@flow(name="hidden-interrupt")
def _fails_as_prefect_does_when_an_interrupt_is_hidden() -> None:
    raise ValueError("Task run is not set")


def _state_name(flow_run_id: str) -> str:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
    assert state is not None
    return state.name


@pytest.mark.usefixtures("prefect_harness")
def test_an_interrupted_run_that_ended_failed_is_set_crashed() -> None:
    state = _fails_as_prefect_does_when_an_interrupt_is_hidden(return_state=True)
    flow_run_id = str(state.state_details.flow_run_id)
    assert _state_name(flow_run_id) == "Failed"
    # a run that ended is left as it ended (the resuming run's correction of kill -9)...
    assert _mark_crashed(flow_run_id) is None
    assert _state_name(flow_run_id) == "Failed"
    # ...unless it was interrupted: then Failed only hides the interrupt
    assert _mark_crashed(flow_run_id, "interrupted by SIGTERM", replace_failed=True) == flow_run_id
    assert _state_name(flow_run_id) == "Crashed"
