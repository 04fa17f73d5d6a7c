"""The retraining loop as a user runs it: a batch lands, the sensor announces it, a run follows.

Against a real `prefect server` (its trigger services on), with the process work pool and
`prefect worker start --run-once`: deploy `nightly-retrain` and `watch-incoming` from
prefect.yaml (parameters overridden at deploy time with `--params`: 2,000/500-row slices, 20
hidden nodes, 2 epochs, a temporary data_dir); a first run gives champion v1; two batches are
copied into the inbox; `mnistnn watch --once` ingests them and emits the events; the trigger
(debounced: two events, one run) creates the run, the worker runs it on the new snapshot, and
the model it registers names the batches in its lineage; a second `watch --once` finds nothing
new and triggers nothing. Every process started here is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mnistnn.core.files import sha256_file
from mnistnn.registry.store import ModelRegistry
from tests.e2e.client import client_call
from tests.e2e.conftest import BIN, REPO, PrefectServer
from tests.e2e.test_deployment import (
    DEPLOYMENT,
    POOL,
    PREFECT_YAML,
    run_deployment,
    run_worker_once,
    wait_final,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WATCH_DEPLOYMENT = "mnist-watch/watch-incoming"
TRIGGER_DEADLINE = 60.0
QUIET_SECONDS = 6.0


def call(server: PrefectServer, function: str, *args: str) -> Any:
    return client_call(server, function, *args)


def mnistnn(server: PrefectServer, data_dir: Path, *args: str) -> Any:
    """`mnistnn --data-dir D ... --json` with this worktree's code, against the server."""
    env = {**server.env, "PYTHONPATH": str(REPO)}
    command = [str(BIN / "mnistnn"), "--data-dir", str(data_dir), *args, "--json"]
    result = PrefectServer(server.url, server.api_url, server.home, env).run(*command, timeout=120)
    return json.loads(result.stdout.strip().splitlines()[-1])


def deploy(server: PrefectServer, name: str, parameters: dict[str, Any]) -> None:
    """`prefect deploy` one deployment of prefect.yaml, its parameters overridden."""
    server.run(
        *(str(BIN / "prefect"), "--no-prompt", "deploy", "--prefect-file", str(PREFECT_YAML)),
        *("--name", name, "--params", json.dumps(parameters)),
    )


def wait_for_new_run(server: PrefectServer, known: set[str]) -> dict[str, Any]:
    """The first run of nightly-retrain not in `known`, created by someone else (bounded)."""
    deadline = time.monotonic() + TRIGGER_DEADLINE
    while True:
        new = [run for run in call(server, "runs_of", DEPLOYMENT) if run["id"] not in known]
        if new:
            return new[0]
        assert time.monotonic() < deadline, f"no triggered run after {TRIGGER_DEADLINE} s"
        time.sleep(1)


def lineage_text(registry: ModelRegistry, version: str, run_dir: str | None) -> str:
    """The model's metadata and every JSON or markdown record of its run folder."""
    texts = [(registry.version_dir(version) / "meta.json").read_text(encoding="utf-8")]
    if run_dir:
        for path in sorted(Path(run_dir).rglob("*")):
            if path.suffix in {".json", ".md"}:
                texts.append(path.read_text(encoding="utf-8"))
    return "\n".join(texts)


def test_a_batch_in_the_inbox_triggers_a_retrain(
    prefect_server: PrefectServer, small_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    incoming = data_dir / "incoming"
    registry = ModelRegistry(data_dir / "models")
    train = {
        "train_csv": str(small_csvs[0]),
        "test_csv": str(small_csvs[1]),
        "data_dir": str(data_dir),
        "hidden_nodes": 20,
        "epochs": 2,
    }
    prefect = str(BIN / "prefect")
    prefect_server.run(prefect, "work-pool", "create", POOL, "--type", "process", "--overwrite")
    deploy(prefect_server, "nightly-retrain", train)
    watch_params = {"data_dir": str(tmp_path / "watch-data"), "train_csv": str(small_csvs[0])}
    deploy(prefect_server, "watch-incoming", watch_params)
    for name in (DEPLOYMENT, WATCH_DEPLOYMENT):  # only the runs this test asks for
        call(prefect_server, "pause_schedules", name)

    # the deployments as prefect.yaml defines them
    spec = {d["name"]: d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}
    watcher = call(prefect_server, "deployment", WATCH_DEPLOYMENT)
    assert watcher["entrypoint"] == "flows/watch.py:watch_inbox"
    assert watcher["work_pool_name"] == POOL
    assert [s["schedule"]["interval"] for s in watcher["schedules"]] == [60.0]
    assert watcher["global_concurrency_limit"]["limit"] == 1
    [automation] = call(prefect_server, "automations_of", DEPLOYMENT)
    trigger = automation["trigger"]
    assert trigger["expect"] == ["mnistnn.batch.ingested"]
    assert trigger["match"] == {"prefect.resource.id": "mnistnn.batch.*"}
    assert trigger["posture"] == "Reactive" and trigger["threshold"] == 1
    assert trigger["within"] == spec["nightly-retrain"]["triggers"][0]["within"] > 0
    [action] = automation["actions"]
    assert action["type"] == "run-deployment"

    # 1. a first run (asked for by hand): champion v1, trained on the base data only
    first = run_deployment(prefect_server)
    run_worker_once(prefect_server, tmp_path / "worker-1.log")
    assert wait_final(prefect_server, first, timeout=30)["state"] == "COMPLETED"
    v1 = registry.champion()
    assert v1 is not None and v1.flow_run_id == first
    known = {run["id"] for run in call(prefect_server, "runs_of", DEPLOYMENT)}

    # 2. two batches land in the inbox; one pass of the sensor announces both
    sims = mnistnn(
        prefect_server,
        data_dir,
        *("simulate-batches", "--out", str(tmp_path / "sim"), "--count", "2", "--rows", "300"),
        *("--train-csv", str(small_csvs[0])),
    )
    incoming.mkdir(parents=True)
    batches = {}
    for sim in sims:
        copy = Path(shutil.copy(sim["path"], incoming / sim["name"]))
        os.utime(copy, (time.time() - 60, time.time() - 60))  # settled: not being written
        batches[sim["name"]] = sha256_file(copy)
    watch = [*("watch", "--incoming", str(incoming), "--once", "--train-csv", str(small_csvs[0]))]
    announced = mnistnn(prefect_server, data_dir, *watch)
    assert sorted(batch["file"] for batch in announced["new"]) == sorted(batches)
    assert announced["sent_to"] == prefect_server.api_url
    names = sorted(event["event"] for event in announced["events"])
    assert names.count("mnistnn.batch.ingested") == 2
    rotated = next(b for b in announced["new"] if "rotated" in b["file"])
    assert rotated["drift"]["drift"] is True, rotated["drift"]
    assert "mnistnn.data.drift" in names

    # 3. the trigger, not the test, creates the run: once for both events (debounced)
    triggered = wait_for_new_run(prefect_server, known)
    assert triggered["created_by"]["type"] == "AUTOMATION", triggered
    assert triggered["parameters"]["incoming_dir"] == str(incoming.absolute())
    run_worker_once(prefect_server, tmp_path / "worker-2.log")
    final = wait_final(prefect_server, triggered["id"], timeout=30)
    assert final["state"] == "COMPLETED", (tmp_path / "worker-2.log").read_text()[-3000:]
    after = {run["id"] for run in call(prefect_server, "runs_of", DEPLOYMENT)}
    assert after - known == {triggered["id"]}, "more than one run for one burst of batches"

    # 4. its model was trained on the new snapshot, and its lineage names the batches
    [model] = [v for v in registry.versions() if v.flow_run_id == triggered["id"]]
    assert model.train_sha256 != v1.train_sha256
    lineage = lineage_text(registry, model.version, model.run_dir)
    for name, sha in batches.items():
        assert name in lineage and sha in lineage, f"{name} missing from the lineage"

    # 5. nothing new: the sensor sends nothing, and no run follows
    quiet = mnistnn(prefect_server, data_dir, *watch)
    assert quiet["new"] == [] and quiet["events"] == []
    time.sleep(QUIET_SECONDS)
    assert {run["id"] for run in call(prefect_server, "runs_of", DEPLOYMENT)} == after
