"""Reads and changes through the Prefect client, in the test's own process, against a server.

The e2e tests once ran each call in a `python -c` subprocess: about 2 s of CPU for its imports,
and the tests poll a run's state every second while it trains, which made those subprocesses
a large share of the suite's CPU. Results go through JSON, as they did from the subprocess.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterId,
)
from prefect.settings import PREFECT_API_URL, temporary_settings


def client_call(server: Any, function: str, *args: str) -> Any:
    """`function` of this module, called with a client pointed at `server` (its `api_url`)."""
    pointed = temporary_settings(updates={PREFECT_API_URL: server.api_url})
    with pointed, get_client(sync_client=True) as client:  # entered in order: client after
        return json.loads(json.dumps(CALLS[function](client, *args)))


def deployment(client: SyncPrefectClient, name: str) -> Any:
    return client.read_deployment_by_name(name).model_dump(mode="json")


def pause_schedules(client: SyncPrefectClient, name: str) -> list[str]:
    found = client.read_deployment_by_name(name)
    for schedule in found.schedules:
        client.update_deployment_schedule(found.id, schedule.id, active=False)
    return [str(schedule.id) for schedule in found.schedules]


def flow_run(client: SyncPrefectClient, run_id: str) -> dict[str, Any]:
    run = client.read_flow_run(UUID(run_id))
    by_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(run_id)]))
    artifacts = client.read_artifacts(artifact_filter=by_run)
    return {
        "state": run.state.type.value if run.state else None,
        "message": run.state.message if run.state else None,
        "deployment_id": str(run.deployment_id),
        "name": run.name,
        "start_time": run.start_time.timestamp() if run.start_time else None,
        "end_time": run.end_time.timestamp() if run.end_time else None,
        "artifacts": [
            {"key": a.key, "type": a.type, "data": a.data, "id": str(a.id)} for a in artifacts
        ],
    }


def mark_crashed(client: SyncPrefectClient, run_id: str) -> str:
    """What the UI's "Change state" does for a run whose machine died: also frees its
    deployment concurrency slot, which the dead process can no longer release."""
    from prefect.states import Crashed

    state = Crashed(message="its worker died (kill -9)")
    return client.set_flow_run_state(UUID(run_id), state, force=True).status.value


def concurrency_limit(client: SyncPrefectClient, name: str, limit: str) -> int:
    from prefect.client.schemas.actions import DeploymentUpdate

    found = client.read_deployment_by_name(name)
    client.update_deployment(found.id, DeploymentUpdate(concurrency_limit=int(limit)))
    updated = client.read_deployment_by_name(name).global_concurrency_limit
    assert updated is not None
    return updated.limit


def work_pools(client: SyncPrefectClient) -> list[str]:
    return [pool.name for pool in client.read_work_pools()]


def runs_of(client: SyncPrefectClient, name: str) -> list[dict[str, Any]]:
    found = client.read_deployment_by_name(name)
    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id]))
    )
    return [
        {
            "id": str(run.id),
            "parameters": run.parameters,
            "created_by": run.created_by.model_dump(mode="json") if run.created_by else None,
            "state": run.state.type.value if run.state else None,
        }
        for run in runs
    ]


def automations_of(client: SyncPrefectClient, name: str) -> list[Any]:
    found = client.read_deployment_by_name(name)
    automations = client.read_resource_related_automations(f"prefect.deployment.{found.id}")
    return [automation.model_dump(mode="json") for automation in automations]


def automations(client: SyncPrefectClient) -> list[str]:
    return sorted(a.name for a in client.read_automations())


def pause_automation(client: SyncPrefectClient, name: str) -> str:
    for found in client.read_automations_by_name(name):
        client.pause_automation(found.id)
    return name


def run_count(client: SyncPrefectClient, run_id: str) -> int:
    return client.read_flow_run(UUID(run_id)).run_count


CALLS = {
    function.__name__: function
    for function in (
        deployment,
        pause_schedules,
        flow_run,
        mark_crashed,
        concurrency_limit,
        work_pools,
        runs_of,
        automations_of,
        automations,
        pause_automation,
        run_count,
    )
}
