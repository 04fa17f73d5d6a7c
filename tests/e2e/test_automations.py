"""Unattended operation against a real `prefect server`: liveness, recovery, alerts, events.

One server, one webhook receiver (tests/e2e/receiver.py) and `mnistnn automations apply
--notify <receiver>` for the whole module; two process workers, each in its own clone of HEAD
(as tests/e2e/test_s3_workers.py), share a local data folder. The deployments send a heartbeat
every 30 s (prefect.yaml, Prefect's minimum); the liveness rule here waits two intervals.

1. apply twice leaves one set (the second run changes nothing); staleness with a window of
   seconds sends exactly one message.
2. A nightly-retrain run is killed with its worker (kill -9 of the whole tree: a dead machine)
   after epoch 2's checkpoint. With no further action: the zombie rule marks it Crashed, the
   recovery rule runs it again on the other worker, it resumes after epoch 2 and completes
   bit-identical to an uninterrupted run, and the receiver got the crash and completion messages.
   While the dead run waits for the zombie rule (no worker needed): a drifted batch (`mnistnn
   watch`) sends a drift message, a promotion (`mnistnn models promote`) a champion message and
   `mnistnn.model.promoted` in the server's events.
3. A run whose input file does not exist: one message naming the file.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mnistnn import NetworkConfig, NeuralNetwork
from mnistnn.model.checkpoint import weights_bytes
from mnistnn.registry.store import ModelRegistry
from tests.conftest import Arrays, write_mnist_csv
from tests.e2e.client import client_call
from tests.e2e.conftest import BIN, REPO, PrefectServer
from tests.e2e.processes import readme_command, spawn, stop
from tests.e2e.receiver import Receiver, webhook_receiver
from tests.e2e.test_deployment import (  # noqa: F401 (`deployed` is a fixture used here)
    POOL,
    deployed,
    run_deployment,
    wait_final,
)
from tests.e2e.test_s3_workers import WARM_UP, Worker, start_workers, wait_for
from tests.registry.conftest import register

pytestmark = pytest.mark.e2e

ZOMBIE_AFTER = 60  # two heartbeat intervals of 30 s
TRAIN_ROWS, TEST_ROWS, EPOCHS = 10_000, 500, 4
TIMEOUT = 300.0
README_SECTION = "Unattended: liveness, recovery and alerts"


def call(server: PrefectServer, function: str, *args: str) -> Any:
    return client_call(server, function, *args)


def mnistnn(
    server: PrefectServer, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "mnistnn"), *args]
    if check:
        return server.run(*command)
    return subprocess.run(command, env=server.env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as found:
        yield found
        # what arrived, for whoever reads the output (-s); the README quotes these
        print("\n".join(f"\n[message]\n{m.body.get('text', '')}" for m in found.messages))


@pytest.fixture(scope="module")
def applied(
    request: pytest.FixtureRequest, prefect_server: PrefectServer, receiver: Receiver
) -> list[str]:
    """The automations applied once (the first test applies them again); their names."""
    request.getfixturevalue("deployed")  # the pool and deployments, schedules paused
    call(prefect_server, "pause_automation", "retrain-on-new-batches")  # no full-size runs
    # the README's command, as written, with the receiver as the destination
    command = shlex.split(readme_command(README_SECTION, "automations apply"))
    command[command.index("--notify") + 1] = receiver.url
    first = prefect_server.run(*command, "--zombie-after", str(ZOMBIE_AFTER)).stdout
    assert first.count("created") == 10, first  # the block and nine automations
    return [line.split()[-1] for line in first.splitlines() if "automation" in line]


@pytest.fixture(scope="module")
def workers(
    prefect_server: PrefectServer, applied: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Worker]]:
    """Two workers, each in a fresh clone of HEAD with its own home; killed at the end."""
    root = tmp_path_factory.mktemp("machines")
    started: list[Worker] = []
    machines = {}
    try:
        for name in ("w1", "w2"):
            clone = root / name
            subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
            env = {
                **prefect_server.env,
                "MNISTNN_HOME": str(clone),
                "PYTHONPATH": str(clone),
                "PREFECT_HOME": str(root / f"{name}-prefect-home"),
                "MNISTNN_LEASE_TTL": "10",
            }
            warm = spawn([str(BIN / "python"), "-c", WARM_UP], env, cwd=clone)
            machines[name] = (clone, env, warm)
        for _, _, warm in machines.values():
            assert warm.wait(timeout=TIMEOUT) == 0, "warming up a clone failed"
        start_workers(root, {name: (c, e) for name, (c, e, _) in machines.items()}, started)
        yield started
    finally:
        for _, _, warm in machines.values():
            stop(warm, signal.SIGKILL)
        for worker in started:
            if worker.process.poll() is None:
                worker.kill()


@pytest.fixture(scope="module")
def slices(
    mnist_train: Arrays, mnist_test: Arrays, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("slices")
    train = write_mnist_csv(
        folder / "train.csv.gz", mnist_train[0][:TRAIN_ROWS], mnist_train[1][:TRAIN_ROWS]
    )
    test = write_mnist_csv(
        folder / "test.csv.gz", mnist_test[0][:TEST_ROWS], mnist_test[1][:TEST_ROWS]
    )
    return train, test


def test_apply_is_idempotent_and_staleness_alerts_once(
    prefect_server: PrefectServer, applied: list[str], receiver: Receiver
) -> None:
    options = ("--notify", receiver.url, "--zombie-after", str(ZOMBIE_AFTER))
    again = mnistnn(prefect_server, "automations", "apply", *options).stdout
    assert all(line.startswith("unchanged") for line in again.splitlines()), again
    names = [name for name in call(prefect_server, "automations") if name.startswith("mnistnn-")]
    assert sorted(names) == sorted(applied) and len(names) == 9  # one set
    # a window of seconds: changes one automation, and arms it now. It stays so for the rest
    # of the module (a completed run later re-arms it: more messages, about other spells).
    start = time.monotonic()
    stale = mnistnn(prefect_server, "automations", "apply", *options, "--stale-after", "10").stdout
    assert [line for line in stale.splitlines() if not line.startswith("unchanged")] == [
        "updated   automation mnistnn-notify-stale"
    ], stale
    first = receiver.wait_for(
        lambda m: m.at >= start and "no nightly-retrain" in m.text, "staleness message", 90
    )
    time.sleep(15)  # more than a window: still one message for this stale spell
    assert len(receiver.matching("no nightly-retrain", since=start)) == 1
    assert "/events?resource=prefect.deployment." in first.body["body"]  # a UI link


def uninterrupted_sha256(mnist_train: Arrays) -> str:
    network = NeuralNetwork(NetworkConfig(hidden_nodes=88))
    for _ in range(EPOCHS):
        network.train_epoch(mnist_train[0][:TRAIN_ROWS], mnist_train[1][:TRAIN_ROWS])
    return hashlib.sha256(weights_bytes(network)).hexdigest()


def test_killed_run_is_crashed_rerun_elsewhere_and_completes_bit_identical(
    prefect_server: PrefectServer,
    workers: list[Worker],
    receiver: Receiver,
    slices: tuple[Path, Path],
    mnist_train: Arrays,
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    parameters = {
        "train_csv": str(slices[0]),
        "test_csv": str(slices[1]),
        "data_dir": str(data_dir),
        "epochs": EPOCHS,
        "publish_report": False,
    }
    run_id = run_deployment(prefect_server, **parameters)
    second = wait_for(
        lambda: next(iter(data_dir.glob("runs/*/checkpoints/epoch-0002.json")), None),
        "epoch 2's checkpoint",
    )
    picked, _ = next((w, found) for w in workers if (found := w.flow_process(run_id)))
    picked.kill()
    killed = time.monotonic()
    run_dir = second.parents[1]
    assert not (run_dir / "metrics.json").exists(), "the run finished before the kill"
    [survivor] = [w for w in workers if w is not picked]
    # meanwhile (the dead run waits for the zombie rule): drift and promotion, no worker needed
    drift_and_promotion_are_announced(prefect_server, receiver, slices, mnist_train, tmp_path)

    crashed = receiver.wait_for(
        lambda m: "Crashed" in m.body.get("subject", ""), "crash message", TIMEOUT
    )
    run = wait_final(prefect_server, run_id, TIMEOUT)
    assert run["state"] == "COMPLETED", f"{run}\n{survivor.text()[-3000:]}"
    done = receiver.wait_for(
        lambda m: "Completed on attempt 2" in m.body.get("subject", ""), "completion message", 60
    )
    print(
        f"\nkill -> Crashed message {crashed.at - killed:.0f} s, -> completion message "
        f"{done.at - killed:.0f} s\n{crashed.text}\n---\n{done.text}"
    )
    assert survivor.ran(run)
    assert "no heartbeat for 60 s" in crashed.text and "re-run 1 of 2" in crashed.text
    assert run["name"] in crashed.text and "/runs/flow-run/" in crashed.text
    assert call(prefect_server, "run_count", run_id) == 2

    logs = prefect_server.run(str(BIN / "prefect"), "flow-run", "logs", run_id).stdout
    resumed = re.search(r"resuming \S+ after epoch (\d+)", logs)
    assert resumed and 2 <= int(resumed.group(1)) < EPOCHS, logs[-3000:]
    assert "attempt 2 of flow run" in logs
    weights = (run_dir / "weights.npz").read_bytes()
    assert hashlib.sha256(weights).hexdigest() == uninterrupted_sha256(mnist_train)
    # the register step announced the first champion
    receiver.wait_for(
        lambda m: "champion none -> v0001" in m.body.get("subject", ""), "champion message", 60
    )


def test_failed_run_sends_one_message_naming_the_file(
    prefect_server: PrefectServer,
    workers: list[Worker],
    receiver: Receiver,
    slices: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-such-train.csv"
    run_id = run_deployment(
        prefect_server,
        train_csv=str(missing),
        test_csv=str(slices[1]),
        data_dir=str(tmp_path / "data"),
    )
    run = wait_final(prefect_server, run_id, TIMEOUT)
    assert run["state"] == "FAILED", run
    message = receiver.wait_for(lambda m: run["name"] in m.text, "failure message", 60)
    assert "Failed" in message.body["subject"] and str(missing) in message.body["body"]
    assert "mnist-training/nightly-retrain" in message.text and '"train_csv"' in message.text
    time.sleep(3)
    assert len(receiver.matching(run["name"])) == 1


def events_named(server: PrefectServer, name: str) -> list[dict[str, Any]]:
    body = json.dumps({"filter": {"event": {"name": [name]}}, "limit": 50}).encode()
    request = urllib.request.Request(
        f"{server.api_url}/events/filter", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return list(json.load(response)["events"])


def drift_and_promotion_are_announced(
    prefect_server: PrefectServer,
    receiver: Receiver,
    slices: tuple[Path, Path],
    mnist_train: Arrays,
    tmp_path: Path,
) -> None:
    """A drifted batch sends a drift message; a promotion a champion message and an event."""
    # a batch of one label only: flagged by the label rule, champion or not
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    ones = np.flatnonzero(mnist_train[1] == 1)[:300]
    write_mnist_csv(incoming / "only-ones.csv", mnist_train[0][ones], mnist_train[1][ones])
    data_dir = str(tmp_path / "registry")
    watched = mnistnn(
        prefect_server,
        "--data-dir",
        data_dir,
        "watch",
        "--once",
        "--incoming",
        str(incoming),
        "--settle-seconds",
        "0",
        "--train-csv",
        str(slices[0]),
    ).stdout
    assert "DRIFT" in watched, watched
    drift = receiver.wait_for(
        lambda m: "drift in batch only-ones.csv" in m.text, "drift message", 60
    )
    assert "label" in drift.body["body"] and "300 rows" in drift.body["body"]

    registry = ModelRegistry(Path(data_dir) / "models")
    register(registry, seed=1, accuracy=0.9)
    register(registry, seed=2, accuracy=0.8)
    promoted = mnistnn(prefect_server, "--data-dir", data_dir, "models", "promote", "v0002")
    assert "champion is now v0002" in promoted.stdout
    message = receiver.wait_for(
        lambda m: "champion v0001 -> v0002" in m.text, "champion message", 60
    )
    assert "0.9" in message.text and "0.8" in message.text and "manual promotion" in message.text
    # the feed is written in batches: poll until the event is stored
    [event] = wait_for(
        lambda: (
            [
                e
                for e in events_named(prefect_server, "mnistnn.model.promoted")
                if e["payload"].get("by") == "cli"
            ]
            or time.sleep(1)
        ),
        "mnistnn.model.promoted in the Event Feed",
        timeout=60,
    )
    assert event["resource"]["prefect.resource.id"] == "mnistnn.model.v0002"
    assert event["payload"]["old_version"] == "v0001"
