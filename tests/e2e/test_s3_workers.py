"""Workers that share no disk: two process workers, each in its own clone, data only on S3.

Against SeaweedFS and a real `prefect server`: the nightly-retrain deployment of
deployments/prefect.yaml is run by two `prefect worker start --limit 1` processes, each started
in a fresh `git clone` of this repository's HEAD (MNISTNN_HOME, PYTHONPATH, PREFECT_HOME and
TMPDIR all its own), so the only thing they share is the bucket and the server.

1. Two configurations started together run on the two workers at once with the same data_dir:
   the registry ends with two versions and the better one is champion.
2. A run is killed with its worker (kill -9 of the worker *and* its flow-run process: Prefect
   starts that one in a session of its own, so killing the worker's process group alone would
   leave it training) once its first checkpoint is in the bucket. The operator's recovery is
   Prefect's own: mark the dead run Crashed (the UI's "Change state"; the dead process cannot
   release the deployment's concurrency slot) and `prefect flow-run retry` it. The surviving
   worker takes over the stale lease after its ttl (MNISTNN_LEASE_TTL, short here), resumes from
   the bucket's last valid checkpoint and ends bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from mnistnn import NetworkConfig, NeuralNetwork
from mnistnn.core import locations
from mnistnn.model.checkpoint import weights_bytes
from mnistnn.registry.store import ModelRegistry
from tests.conftest import Arrays, write_mnist_csv
from tests.e2e.client import client_call
from tests.e2e.conftest import BIN, REPO, PrefectServer
from tests.e2e.processes import spawn, stop
from tests.e2e.test_deployment import (  # noqa: F401 (`deployed` is a fixture used here)
    DEPLOYMENT,
    POOL,
    deployed,
    run_deployment,
    wait_final,
)
from tests.s3fixtures import FOREIGN_AWS, aws_environment, new_bucket, use_aws_environment
from tests.seaweed import SeaweedServer

pytestmark = pytest.mark.e2e

TRAIN_ROWS, TEST_ROWS = 5000, 500  # an epoch of the reference network lasts about a second
EPOCHS, HIDDEN = 5, 88
#: The workers' run-lease ttl (seconds): the retried run waits at most this long for the lease.
LEASE_TTL = "10"
TIMEOUT = 240.0
#: Compiles the numba kernels into the clone's cache, as a provisioned machine's first run would
#: (otherwise the first epoch on each worker includes the compilation).
WARM_UP = (
    "from mnistnn import NetworkConfig, NeuralNetwork\n"
    "from mnistnn.data.fast_csv import read_csv\n"
    "pixels, labels = read_csv('data/raw/mnist_test.csv.gz')\n"
    "pixels, labels = pixels[:2000], labels[:2000]\n"
    "# read-only, as the flow's Parquet arrays are: numba compiles per array type\n"
    "pixels.flags.writeable = labels.flags.writeable = False\n"
    "# enough rows that the automatic choice runs both the one- and the two-thread loop\n"
    "NeuralNetwork(NetworkConfig(hidden_nodes=4)).train_epoch(pixels, labels)\n"
)


@dataclass
class Worker:
    """A `prefect worker start` in its own clone (its "machine")."""

    name: str
    clone: Path
    log: Path
    process: subprocess.Popen[bytes]

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def ran(self, run: dict[str, Any]) -> bool:
        """Whether this worker started the flow run (`run` as `client_call` reads it)."""
        return f"Flow run '{run['name']}' submitted to infrastructure" in self.text()

    def flow_process(self, run_id: str) -> psutil.Process | None:
        """The descendant of this worker that runs flow run `run_id`, if any."""
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                if child.environ().get("PREFECT__FLOW_RUN_ID") == run_id:
                    return child
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return None

    def kill(self) -> None:
        """kill -9 everything this machine ran: the worker and all its descendants."""
        tree = [psutil.Process(self.process.pid)]
        tree += tree[0].children(recursive=True)  # read before the kill reparents them
        for process in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        psutil.wait_procs(tree, timeout=30)
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def aws(seaweed: SeaweedServer) -> Iterator[dict[str, str]]:
    """This process's AWS variables pointed at the test server, for the module; returns them."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_aws_environment(seaweed, monkeypatch)
        yield aws_environment(seaweed)


@pytest.fixture(scope="module")
def inputs(
    aws: dict[str, str],
    seaweed: SeaweedServer,
    mnist_train: Arrays,
    mnist_test: Arrays,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, str, str]:
    """(bucket, train URL, test URL): slices of the bundled data, uploaded to a fresh bucket."""
    bucket = new_bucket(seaweed)
    folder = tmp_path_factory.mktemp("s3-slices")
    urls = []
    for name, (pixels, labels), rows in (
        ("train", mnist_train, TRAIN_ROWS),
        ("test", mnist_test, TEST_ROWS),
    ):
        local = write_mnist_csv(folder / f"{name}_{rows}.csv.gz", pixels[:rows], labels[:rows])
        url = f"s3://{bucket}/inputs/{local.name}"
        locations.write_bytes(url, local.read_bytes())
        urls.append(url)
    return bucket, urls[0], urls[1]


@pytest.fixture(scope="module")
def workers(
    request: pytest.FixtureRequest,
    prefect_server: PrefectServer,
    aws: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Worker]]:
    """Two workers on the pool, each in a fresh clone of HEAD; killed (whole tree) at the end."""
    root = tmp_path_factory.mktemp("machines")
    machines = {}
    warming = []
    for name in ("w1", "w2"):
        clone = root / name
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
        env = {k: v for k, v in prefect_server.env.items() if k not in FOREIGN_AWS}
        env.update(aws)
        env.update(
            {
                "MNISTNN_HOME": str(clone),  # the pull step's working directory
                "PYTHONPATH": str(clone),  # the flow code comes from this clone
                "PREFECT_HOME": str(root / f"{name}-prefect-home"),
                "TMPDIR": str((root / f"{name}-tmp").resolve()),
                "MNISTNN_LEASE_TTL": LEASE_TTL,
            }
        )
        Path(env["TMPDIR"]).mkdir()
        machines[name] = (clone, env)
        warming.append(spawn([str(BIN / "python"), "-c", WARM_UP], env, cwd=clone))
    request.getfixturevalue("deployed")  # meanwhile: the pool and the deployment
    started = []
    try:
        for process in warming:
            assert process.wait(timeout=TIMEOUT) == 0, "warming up a clone failed"
        start_workers(root, machines, started)
        yield started
    finally:
        for process in warming:
            stop(process, signal.SIGKILL)
        for worker in started:
            if worker.process.poll() is None:
                worker.kill()


def start_workers(
    root: Path, machines: dict[str, tuple[Path, dict[str, str]]], started: list[Worker]
) -> None:
    """`prefect worker start` (one run at a time) in each machine's clone, its log in
    `root/<name>.log`; each is added to `started` at once (the caller kills them), then all are
    waited for."""
    for name, (clone, env) in machines.items():
        log = root / f"{name}.log"
        command = [str(BIN / "prefect"), "worker", "start", "--pool", POOL]
        with log.open("wb") as out:
            process = spawn([*command, "--name", name, "--limit", "1"], env, cwd=clone, log=out)
        started.append(Worker(name, clone, log, process))
    for worker in started:
        wait_for(lambda w=worker: "started!" in w.text(), f"worker {worker.name} to start")


def wait_for(ready: Any, what: str, timeout: float = TIMEOUT) -> Any:
    """Poll `ready()` every 0.1 s until it returns something truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (found := ready()):
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.1)
    return found


def parameters(inputs: tuple[str, str, str], data_dir: str, **network: Any) -> dict[str, Any]:
    """The flow's parameters; no report (its figures take long and are tested elsewhere)."""
    return {
        "train_csv": inputs[1],
        "test_csv": inputs[2],
        "data_dir": data_dir,
        "publish_report": False,
        **network,
    }


def uninterrupted_sha256(mnist_train: Arrays, config: NetworkConfig, epochs: int) -> str:
    """sha256 of the weights the library trains on this machine, no kill, no S3."""
    network = NeuralNetwork(config)
    for _ in range(epochs):
        network.train_epoch(mnist_train[0][:TRAIN_ROWS], mnist_train[1][:TRAIN_ROWS])
    return hashlib.sha256(weights_bytes(network)).hexdigest()


def test_two_configurations_at_once_on_two_workers_both_register(
    prefect_server: PrefectServer, workers: list[Worker], inputs: tuple[str, str, str]
) -> None:
    data_dir = f"s3://{inputs[0]}/pair"
    assert all(worker.process.poll() is None for worker in workers)  # before the kill test
    # one slot by default (prefect.yaml); a team with two workers lets both run at once
    assert client_call(prefect_server, "concurrency_limit", DEPLOYMENT, "2") == 2
    try:
        good = run_deployment(
            prefect_server, **parameters(inputs, data_dir, hidden_nodes=40, epochs=2)
        )
        poor = run_deployment(
            prefect_server,
            **parameters(inputs, data_dir, hidden_nodes=40, epochs=2, learning_rate=0.001),
        )
        runs = {run_id: wait_final(prefect_server, run_id, TIMEOUT) for run_id in (good, poor)}
    finally:
        client_call(prefect_server, "concurrency_limit", DEPLOYMENT, "1")
    for run in runs.values():
        assert run["state"] == "COMPLETED", run
    # each worker (limit 1) ran one of them. Whether the two runs overlap in time depends on how
    # fast each worker starts its flow process (20 s apart under load), so it is not asserted:
    # racing commits on one key are proven by tests/registry's concurrent compare-and-swap tests
    # against this same server; here the point is two machines sharing nothing but the bucket.
    assert {sum(worker.ran(run) for run in runs.values()) for worker in workers} == {1}

    registry = ModelRegistry(f"{data_dir}/models")
    versions = registry.versions()
    assert sorted(v.version for v in versions) == ["v0001", "v0002"]
    assert {v.flow_run_id for v in versions} == {good, poor}
    champion = registry.champion()
    assert champion is not None and champion.flow_run_id == good
    assert champion.accuracy == max(v.accuracy for v in versions)
    assert [v.is_champion for v in versions].count(True) == 1


def test_run_killed_with_its_worker_resumes_on_the_other_bit_identical(
    prefect_server: PrefectServer,
    workers: list[Worker],
    inputs: tuple[str, str, str],
    mnist_train: Arrays,
) -> None:
    data_dir = f"s3://{inputs[0]}/kill"
    store = locations.store_at(data_dir)
    run_id = run_deployment(
        prefect_server, **parameters(inputs, data_dir, hidden_nodes=HIDDEN, epochs=EPOCHS)
    )

    def first_checkpoint() -> str | None:
        keys = store.list("runs/")
        return next((k for k in keys if k.endswith("/checkpoints/epoch-0001.json")), None)

    run_key = wait_for(first_checkpoint, "the first checkpoint in the bucket").split("/")[1]
    picked, flow = next(
        (worker, found) for worker in workers if (found := worker.flow_process(run_id))
    )
    # the flow code ran from the worker's own clone (the pull step), not from this checkout
    assert Path(flow.cwd()) == picked.clone
    assert flow.environ()["PYTHONPATH"] == str(picked.clone)
    # Prefect gives the flow run a session of its own: killing the worker's process group
    # would leave it training, so the kill takes the worker's whole tree (a dead machine)
    assert os.getsid(flow.pid) != os.getsid(picked.process.pid)
    picked.kill()
    assert not psutil.pid_exists(flow.pid) or flow.status() == psutil.STATUS_ZOMBIE
    assert not store.exists(f"runs/{run_key}/metrics.json"), "the run finished before the kill"
    assert store.exists(f"runs/{run_key}/.lease"), "a killed run leaves its lease behind"
    [survivor] = [worker for worker in workers if worker is not picked]

    # the operator's recovery: the dead run is Crashed, then retried with the same parameters
    assert client_call(prefect_server, "mark_crashed", run_id) == "ACCEPT"
    prefect_server.run(str(BIN / "prefect"), "flow-run", "retry", run_id)
    run = wait_final(prefect_server, run_id, timeout=TIMEOUT)
    assert run["state"] == "COMPLETED", f"{run}\n{survivor.text()[-3000:]}"
    assert survivor.ran(run)

    logs = prefect_server.run(str(BIN / "prefect"), "flow-run", "logs", run_id).stdout
    resumed = re.search(rf"resuming \S+/runs/{run_key} after epoch (\d+)", logs)
    assert resumed, f"the retried run did not resume:\n{logs[-3000:]}"
    assert 1 <= int(resumed.group(1)) < EPOCHS
    assert "taking over stale lease" in survivor.text()

    expected = uninterrupted_sha256(mnist_train, NetworkConfig(hidden_nodes=HIDDEN), EPOCHS)
    weights = store.read_bytes(f"runs/{run_key}/weights.npz")
    assert hashlib.sha256(weights).hexdigest() == expected
    [version] = ModelRegistry(f"{data_dir}/models").versions()
    assert version.flow_run_id == run_id and version.is_champion
    assert version.weights_sha256 == expected
    assert not store.exists(f"runs/{run_key}/.lease"), "the resumed run released its lease"
