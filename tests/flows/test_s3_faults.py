"""The mnist-training flow on S3 while the object store dies in the middle of a checkpoint upload.

The test injects the fault (the product has no hooks): the store's write of epoch 2's weights
first leaves a torn object (half the bytes) under that key, then kills the server by PID, then
attempts the real PUT against the dead server, and only then restarts the server on the same
folder and ports. The task must fail with a transient error, be retried by Prefect until the
store is back, and end with weights bit-identical to an uninterrupted run; the torn `.npz` (no
JSON vouches for it) must never become a network.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter
from prefect.client.schemas.filters import LogFilterTaskRunId as LogTaskRunId

from flows import training as flow_module
from mnistnn.core import locations
from mnistnn.core.files import sha256_bytes
from mnistnn.core.storage_s3 import S3Store
from mnistnn.errors import StorageUnavailable
from mnistnn.model import checkpoint
from mnistnn.registry import files as registry_files
from tests.flows.test_training import HIDDEN, direct_weights
from tests.seaweed import SeaweedServer

pytestmark = pytest.mark.usefixtures("prefect_harness")

TARGET = "checkpoints/epoch-0002.npz"


class StoreOutage:
    """The one-shot fault: torn object, kill, failed PUT, restart (in a thread, recorded)."""

    def __init__(self, server: SeaweedServer, write: Callable[[S3Store, str, bytes], None]):
        self.server, self.write = server, write
        self.torn_sha256: str | None = None
        self.put_error: BaseException | None = None
        self.restart_error: BaseException | None = None
        self.restarter: threading.Thread | None = None
        self.restart_seconds = 0.0
        self._lock = threading.Lock()

    def __call__(self, store: S3Store, key: str, data: bytes) -> None:
        with self._lock:
            # a location's store is rooted at its folder: match the whole URL, not the key
            fire = store.join(key).endswith(f"/{TARGET}") and self.torn_sha256 is None
            if fire:
                torn = data[: len(data) // 2]
                self.write(store, key, torn)  # as a store that kept part of an upload would
                self.torn_sha256 = sha256_bytes(torn)
                self.server.kill()
        if not fire:
            return self.write(store, key, data)
        try:
            self.write(store, key, data)  # the server is gone: this PUT must fail
        except BaseException as exc:
            self.put_error = exc
            raise
        finally:
            self.restarter = threading.Thread(target=self._restart, name="restart seaweed")
            self.restarter.start()

    def _restart(self) -> None:
        started = time.monotonic()
        try:
            self.server.start(timeout=60)
            self.restart_seconds = time.monotonic() - started
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.restart_error = exc


def test_store_killed_mid_checkpoint_upload_is_retried_and_bit_identical(
    small_csvs: tuple[Path, Path],
    s3_url: str,
    seaweed: SeaweedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outage = StoreOutage(seaweed, S3Store.write_bytes)
    monkeypatch.setattr(S3Store, "write_bytes", lambda store, key, data: outage(store, key, data))
    built: list[str] = []  # sha256 of every byte string that became a network
    original_from_bytes = checkpoint.weights_from_bytes

    def spy(data: bytes, source: Any, expected_sha256: str | None = None) -> Any:
        network = original_from_bytes(data, source, expected_sha256)
        built.append(sha256_bytes(data))
        return network

    monkeypatch.setattr(checkpoint, "weights_from_bytes", spy)
    monkeypatch.setattr(registry_files, "weights_from_bytes", spy)
    data_dir = f"{s3_url}/data"
    try:
        result = flow_module.train_pipeline(
            train_csv=str(small_csvs[0]),
            test_csv=str(small_csvs[1]),
            hidden_nodes=HIDDEN,
            epochs=2,
            data_dir=data_dir,
            publish_report=False,
        ).to_dict()
    finally:
        if outage.restarter is not None:
            outage.restarter.join()
    assert outage.restart_error is None, outage.restart_error
    assert outage.torn_sha256 is not None, "the fault never fired"
    assert isinstance(outage.put_error, StorageUnavailable), outage.put_error

    # the run completed once the store was back, bit-identical to an uninterrupted run
    final = checkpoint.load_weights(f"{result['run_dir']}/weights.npz")
    direct = direct_weights(small_csvs, 2)
    np.testing.assert_array_equal(final.w_input_hidden, direct.w_input_hidden)
    np.testing.assert_array_equal(final.w_hidden_output, direct.w_hidden_output)
    assert result["trained_epochs"] == [1, 2]

    # the torn object never became a network, and what is stored now is vouched for
    assert outage.torn_sha256 not in built
    meta = f"{result['run_dir']}/checkpoints/epoch-0002.json"
    checkpoint.verify(meta)
    stored = locations.read_bytes(f"{result['run_dir']}/{TARGET}")
    assert sha256_bytes(stored) != outage.torn_sha256

    # Prefect saw the transient failure and retried the task that hit it
    attempts, failures = epoch_task_runs(result["flow_run_id"], "train epoch 2")
    assert attempts >= 2, attempts
    assert any("cannot reach the S3 endpoint" in line for line in failures), failures
    print(f"store down {outage.restart_seconds:.1f} s; 'train epoch 2' ran {attempts} times")


def epoch_task_runs(flow_run_id: str, name: str, wait: float = 30) -> tuple[int, list[str]]:
    """(run count, log lines up to its final state) of the task run `name` in the flow run."""
    deadline = time.monotonic() + wait
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        (run,) = [run for run in runs if run.name == name]
        assert run.state is not None and run.state.is_completed(), run.state
        while True:  # logs reach the API in batches: poll until the final state's line is in
            logs = client.read_logs(log_filter=LogFilter(task_run_id=LogTaskRunId(any_=[run.id])))
            lines = [log.message for log in logs]
            if any("Finished in state Completed" in line for line in lines):
                return run.run_count, lines
            if time.monotonic() > deadline:
                return run.run_count, lines
            time.sleep(0.2)
