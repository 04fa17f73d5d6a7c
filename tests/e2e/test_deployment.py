"""`nightly-retrain` as a user runs it: deployed from prefect.yaml, run by a process worker.

Against a real `prefect server`: create the work pool, `prefect deploy` the file, check the
deployment (cron schedule, concurrency limit 1) through the Prefect client, run it twice through
`prefect worker start --run-once` (a good model, then a worse one that must stay a challenger),
and finally serve the same deployment without a worker (`python -m deployments.serve`).

Every run gets small parameters (2,000/500-row slices, 20 hidden nodes) and a temporary data_dir,
so the repository's data/ is never touched. Every process started here is stopped by its PID.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mnistnn.parameters import TrainingParameters, fields
from mnistnn.registry.store import ModelRegistry
from tests.e2e.client import client_call
from tests.e2e.conftest import BIN, REPO, PrefectServer
from tests.e2e.processes import readme_command, readme_commands, spawn, stop

pytestmark = pytest.mark.e2e

DEPLOYMENT = "mnist-training/nightly-retrain"
POOL = "mnistnn-local"
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"
#: The artifacts every finished run publishes (flows/publish.py, flows/training.py).
ARTIFACT_KEYS = {
    "mnist-epoch-metrics": "table",
    "mnist-training-report": "markdown",
    "mnist-run-folder": "markdown",  # a link artifact; the API stores links as markdown
    "mnist-training-progress": "progress",
    "mnist-promotion": "markdown",  # the promotion gate's evidence (flows/publish.py)
}
RUN_TIMEOUT = 180.0
README_SECTION = "Scheduled retraining"


def run_deployment(server: PrefectServer, **parameters: Any) -> str:
    """`prefect deployment run` with JSON parameters; returns the new flow run's id."""
    options = [f"--param={key}={json.dumps(value)}" for key, value in parameters.items()]
    output = server.run(str(BIN / "prefect"), "deployment", "run", DEPLOYMENT, *options).stdout
    found = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert found, f"no flow run id in the output of prefect deployment run:\n{output}"
    return found.group(1)


def small_parameters(small_csvs: tuple[Path, Path], data_dir: Path) -> dict[str, Any]:
    return {
        "train_csv": str(small_csvs[0]),
        "test_csv": str(small_csvs[1]),
        "data_dir": str(data_dir),
        "hidden_nodes": 20,
    }


def wait_final(server: PrefectServer, run_id: str, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
    """Poll the flow run until it is in a final state (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        run = client_call(server, "flow_run", run_id)
        if run["state"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return run
        assert time.monotonic() < deadline, f"flow run {run_id} not final after {timeout} s: {run}"
        time.sleep(1)


def worker_env(server: PrefectServer) -> dict[str, str]:
    """The environment of a worker started as the README's "Scheduled retraining" says: no
    MNISTNN_HOME (the pull step then runs flows in the worker's own checkout)."""
    return {key: value for key, value in server.env.items() if key != "MNISTNN_HOME"}


def run_worker_once(server: PrefectServer, log: Path, timeout: float = RUN_TIMEOUT) -> None:
    """`prefect worker start --run-once`: picks up the due runs, runs them, exits by itself."""
    with log.open("wb") as out:
        worker = spawn(
            [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--run-once"],
            worker_env(server),
            log=out,
        )
        try:
            worker.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker did not exit within {timeout} s:\n{log.read_text()[-3000:]}")
        finally:
            stop(worker, signal.SIGKILL, timeout=10)
    assert worker.returncode == 0, f"worker exited {worker.returncode}:\n{log.read_text()[-3000:]}"


def assert_completed(run: dict[str, Any], log: Path) -> None:
    assert run["state"] == "COMPLETED", (
        f"flow run ended {run['state']}: {run['message']}\n{log.read_text()[-3000:]}"
    )


def assert_completed_with_artifacts(run: dict[str, Any], log: Path) -> dict[str, Any]:
    """The run Completed and published every artifact; returns them by key."""
    assert run["state"] == "COMPLETED", (
        f"flow run ended {run['state']}: {run['message']}\n{log.read_text()[-3000:]}"
    )
    artifacts = {artifact["key"]: artifact for artifact in run["artifacts"]}
    assert {key: artifacts[key]["type"] for key in artifacts} == ARTIFACT_KEYS
    return artifacts


@pytest.fixture(scope="module")
def deployed(prefect_server: PrefectServer) -> dict[str, Any]:
    """The work pool and the deployment, created with the commands the README gives.

    Returns the deployment as the client read it right after `prefect deploy`. Its schedule is
    then paused, so a 03:00 UTC run falling due during the tests cannot start a full training in
    the repository's data/ (manually triggered runs are unaffected).
    """
    # steps 2 and 3 of the README's "Scheduled retraining", as written (run from the checkout)
    pool = shlex.split(readme_command(README_SECTION, "work-pool create"))
    if POOL in client_call(prefect_server, "work_pools"):  # created by another module's test
        pool.append("--overwrite")
    prefect_server.run(*pool)
    prefect_server.run(*shlex.split(readme_command(README_SECTION, " deploy ")))
    deployment = client_call(prefect_server, "deployment", DEPLOYMENT)
    client_call(prefect_server, "pause_schedules", DEPLOYMENT)
    # the inbox sensor's and the hourly scorer's too: a worker would run them in data/
    client_call(prefect_server, "pause_schedules", "mnist-watch/watch-incoming")
    client_call(prefect_server, "pause_schedules", "mnist-batch-predict/score-incoming")
    return deployment


def test_deploy_creates_the_scheduled_deployment(deployed: dict[str, Any]) -> None:
    spec = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))["deployments"][0]
    assert deployed["name"] == "nightly-retrain"
    assert deployed["entrypoint"] == "flows/training.py:train_pipeline"
    assert deployed["work_pool_name"] == POOL
    assert not deployed["paused"]
    [schedule] = deployed["schedules"]
    assert schedule["active"] is True
    assert schedule["schedule"]["cron"] == "0 3 * * *"
    assert schedule["schedule"]["timezone"] == "UTC"
    # `concurrency_limit: 1` in prefect.yaml becomes a global limit of one slot
    assert deployed["global_concurrency_limit"]["limit"] == 1
    assert deployed["global_concurrency_limit"]["active"] is True
    assert deployed["parameters"] == spec["parameters"]
    # data locations only: a stored network value would win over every run's preset
    assert set(spec["parameters"]) <= {"train_csv", "test_csv", "data_dir", "incoming_dir"}
    # `prefect deploy` imported the flow, so it stored the declared parameters, typed
    schema = deployed["parameter_openapi_schema"]["properties"]
    assert list(schema) == [name for _, name, _ in fields(TrainingParameters)]
    assert {"enum": ["reference", "best"], "type": "string"} in schema["preset"]["anyOf"]
    assert schema["hidden_nodes"]["description"] == "hidden nodes (reference 88, best 800)"
    # the worker runs the flow from *its* checkout ($MNISTNN_HOME, resolved at run time on the
    # worker), never from the deploying machine's working directory
    assert deployed["pull_steps"] == [{"flows.pull.run_in_checkout": {}}]


def test_worker_runs_then_keeps_the_better_champion(
    prefect_server: PrefectServer,
    deployed: dict[str, Any],
    small_csvs: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    registry = ModelRegistry(data_dir / "models")

    first = run_deployment(prefect_server, **small_parameters(small_csvs, data_dir), epochs=2)
    run_worker_once(prefect_server, tmp_path / "worker-1.log")
    run = client_call(prefect_server, "flow_run", first)
    assert run["deployment_id"] == deployed["id"]
    artifacts = assert_completed_with_artifacts(run, tmp_path / "worker-1.log")
    champion = registry.champion()
    assert champion is not None, "the first run registered no champion"
    assert champion.flow_run_id == first
    rows = json.loads(artifacts["mnist-epoch-metrics"]["data"])
    assert [row["epoch"] for row in rows] == [1, 2]
    assert rows[-1]["accuracy"] == round(champion.accuracy, 4)

    worse = {**small_parameters(small_csvs, data_dir), "epochs": 1, "learning_rate": 0.001}
    second = run_deployment(prefect_server, **worse)
    run_worker_once(prefect_server, tmp_path / "worker-2.log")
    artifacts = assert_completed_with_artifacts(
        client_call(prefect_server, "flow_run", second), tmp_path / "worker-2.log"
    )
    [challenger] = [version for version in registry.versions() if version.flow_run_id == second]
    now = registry.champion()
    assert now is not None and now.version == champion.version, "the worse model was promoted"
    assert not challenger.is_champion
    assert challenger.accuracy < champion.accuracy

    report = artifacts["mnist-training-report"]["data"]
    assert challenger.run_dir is not None
    assert report == (Path(challenger.run_dir) / "report.md").read_text(encoding="utf-8")
    assert "stays a challenger" in report
    assert f"{challenger.accuracy:.4f}" in report
    assert f"{champion.accuracy:.4f}" in report


def test_readme_worker_and_run_then_presets_through_the_deployment(
    prefect_server: PrefectServer,
    deployed: dict[str, Any],
    small_csvs: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """Steps 4 and 5 of "Scheduled retraining" as written (a long-running worker without
    MNISTNN_HOME; `prefect deployment run ... -p epochs=3`, pointed at small slices and a
    temporary data_dir), then `-p preset=best -p epochs=1`: the preset's 800 hidden nodes,
    and 100 with `-p hidden_nodes=100` added."""
    commands = readme_commands(README_SECTION)
    assert commands[0] == "export PREFECT_API_URL=http://127.0.0.1:4200/api"  # the server's
    log = tmp_path / "worker.log"
    data_dir = tmp_path / "data"
    data = {
        "train_csv": str(small_csvs[0]),
        "test_csv": str(small_csvs[1]),
        "data_dir": str(data_dir),
    }
    with log.open("wb") as out:
        worker = spawn(
            shlex.split(readme_command(README_SECTION, "worker start")),
            worker_env(prefect_server),
            log=out,
        )
        try:
            step_5 = shlex.split(readme_command(README_SECTION, "deployment run"))
            small = [
                f"--param={key}={json.dumps(value)}"
                for key, value in {**data, "hidden_nodes": 20}.items()
            ]
            output = prefect_server.run(*step_5, *small).stdout
            found = re.search(r"UUID: ([0-9a-f-]{36})", output)
            assert found, output
            run = wait_final(prefect_server, found.group(1))
            assert_completed_with_artifacts(run, log)
            trained = trained_config(data_dir, found.group(1))
            assert trained["epochs"] == 3 and trained["config"]["hidden_nodes"] == 20

            quick = {**data, "epochs": 1, "publish_report": False}  # the artifacts: above
            best = run_deployment(prefect_server, **quick, preset="best")
            assert_completed(wait_final(prefect_server, best), log)
            trained = trained_config(data_dir, best)
            assert trained["config"]["hidden_nodes"] == 800
            assert trained["config"]["augment"] == "elastic" and trained["epochs"] == 1

            mixed = run_deployment(prefect_server, **quick, preset="best", hidden_nodes=100)
            assert_completed(wait_final(prefect_server, mixed), log)
            trained = trained_config(data_dir, mixed)
            assert trained["config"]["hidden_nodes"] == 100
            assert trained["config"]["augment"] == "elastic"  # the rest of the preset
        finally:
            stop(worker)
    assert "set MNISTNN_HOME" not in log.read_text(errors="replace")


def test_serve_runs_the_deployment_without_a_worker(
    prefect_server: PrefectServer, small_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    """`python -m deployments.serve` replaces the pool deployment with a served one."""
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serving = subprocess.Popen(
            [str(BIN / "python"), "-m", "deployments.serve"],
            cwd=REPO,
            env=prefect_server.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deployment = wait_served(prefect_server, serving, log)
            [schedule] = deployment["schedules"]
            assert schedule["active"] is True
            assert schedule["schedule"] == {"cron": "0 3 * * *", "timezone": "UTC", "day_or": True}
            assert deployment["global_concurrency_limit"]["limit"] == 1
            client_call(prefect_server, "pause_schedules", DEPLOYMENT)  # see `deployed`

            data_dir = tmp_path / "data"
            parameters = {**small_parameters(small_csvs, data_dir), "epochs": 1}
            run_id = run_deployment(prefect_server, **parameters)
            run = wait_final(prefect_server, run_id)
            assert_completed_with_artifacts(run, log)
            champion = ModelRegistry(data_dir / "models").champion()
            assert champion is not None and champion.flow_run_id == run_id
        finally:
            # the run is final, so serve is idle: SIGTERM only pauses its schedule
            stop(serving)
    assert serving.returncode is not None


def wait_served(
    server: PrefectServer, serving: subprocess.Popen[bytes], log: Path, timeout: float = 90
) -> dict[str, Any]:
    """Wait until serve has registered the deployment (without a work pool) and polls."""
    deadline = time.monotonic() + timeout
    while True:
        assert serving.poll() is None, f"serve exited {serving.returncode}:\n{log.read_text()}"
        if "is being served" in log.read_text(errors="replace"):
            deployment = client_call(server, "deployment", DEPLOYMENT)
            assert deployment["work_pool_name"] is None
            return deployment
        assert time.monotonic() < deadline, f"serve not ready after {timeout} s:\n{log.read_text()}"
        time.sleep(0.5)


def trained_config(data_dir: Path, run_id: str) -> dict[str, Any]:
    """What a deployment run trained: its configuration and epochs, from the registry's
    version of that flow run and its run folder."""
    [version] = [
        version
        for version in ModelRegistry(data_dir / "models").versions()
        if version.flow_run_id == run_id
    ]
    assert version.run_dir is not None
    run_json = json.loads((Path(version.run_dir) / "run.json").read_text(encoding="utf-8"))
    metrics = json.loads((Path(version.run_dir) / "metrics.json").read_text(encoding="utf-8"))
    return {"config": run_json["config"], "epochs": metrics["epochs"]}
