"""The inbox sensor: what one pass ingests, and which events it sends (captured, not sent)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flows import events
from flows import watch as watch_module
from mnistnn import NetworkConfig, NeuralNetwork
from mnistnn.config import DataPaths
from mnistnn.core.files import sha256_file
from mnistnn.data import simulate
from mnistnn.registry.store import ModelRegistry
from tests.conftest import ROOT, write_mnist_csv
from tests.e2e.processes import spawn, stop

SHA = "0" * 64
Sent = list[tuple[str, dict[str, str], dict[str, Any]]]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    """Every event the watch emits, with a server that always answers."""
    captured: Sent = []

    def emit(event: str, resource: dict[str, str], payload: dict[str, Any]) -> bool:
        captured.append((event, resource, payload))
        return True

    monkeypatch.setattr(events, "emit", emit)
    monkeypatch.setattr(events, "server_available", lambda: "http://127.0.0.1:1/api")
    monkeypatch.setattr(events, "flush", lambda timeout=0: None)
    return captured


@pytest.fixture
def inbox(tmp_path: Path, small_csvs: tuple[Path, Path]) -> dict[str, Any]:
    """A data folder, its inbox and the options of a pass (base data: the 2,000-row slice)."""
    paths = DataPaths(tmp_path / "data")
    incoming = Path(paths.incoming)  # a local data folder: its locations are plain paths
    incoming.mkdir(parents=True)
    options = {"train_csv": str(small_csvs[0]), "settle_seconds": 0.0}
    return {"paths": paths, "incoming": incoming, "options": options}


def drop(folder: Path, name: str, pixels: np.ndarray, labels: np.ndarray) -> Path:
    """Write a batch into the inbox as a finished file (modified a minute ago)."""
    path = write_mnist_csv(folder / name, pixels, labels)
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


def one_pass(inbox: dict[str, Any]) -> watch_module.WatchPass:
    return watch_module.watch_once(inbox["incoming"], inbox["paths"], **inbox["options"])


def test_new_batch_emits_ingested(inbox, sent: Sent, mnist_train) -> None:
    path = drop(inbox["incoming"], "batch-a.csv", mnist_train[0][:200], mnist_train[1][:200])
    result = one_pass(inbox)

    sha = sha256_file(path)
    [(name, resource, payload)] = sent
    assert name == "mnistnn.batch.ingested"
    assert resource["prefect.resource.id"] == f"mnistnn.batch.{sha}"
    assert resource["prefect.resource.name"] == "batch-a.csv"
    assert payload["file"] == "batch-a.csv"
    assert payload["rows"] == 200
    assert payload["drift"] is False  # no champion yet
    assert payload["sha256"] == sha
    assert payload["incoming"] == str(inbox["incoming"].absolute())
    assert result.sent_to == "http://127.0.0.1:1/api"
    [batch] = result.new
    assert batch["status"] == "accepted" and batch["drift"]["drift"] is False
    assert "no champion" in batch["drift"]["drift_reason"]
    assert any("accepted batch-a.csv: 200 rows" in line for line in result.lines())


def test_nothing_new_emits_nothing(inbox, sent: Sent, mnist_train) -> None:
    drop(inbox["incoming"], "batch-a.csv", mnist_train[0][:100], mnist_train[1][:100])
    one_pass(inbox)
    sent.clear()
    result = one_pass(inbox)
    assert sent == []
    assert result.new == [] and result.events == []
    assert result.lines() == [f"nothing new in {inbox['incoming'].absolute()}"]


def test_empty_inbox_emits_nothing_and_needs_no_server(inbox, monkeypatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing to send, yet the watch asked for the server")

    monkeypatch.setattr(events, "server_available", fail)
    monkeypatch.setattr(events, "emit", fail)
    assert one_pass(inbox).events == []


def test_refused_batch_emits_no_ingested_event(inbox, sent: Sent, mnist_train) -> None:
    labels = mnist_train[1][:50].astype(np.int64)
    labels[7] = 12  # not a digit: one bad row, and the inbox accepts none by default
    drop(inbox["incoming"], "bad.csv", mnist_train[0][:50], labels)
    result = one_pass(inbox)

    assert [name for name, _, _ in sent] == ["mnistnn.batch.refused"]
    [(_, resource, payload)] = sent
    assert resource["prefect.resource.id"].startswith("mnistnn.batch.")
    assert payload["file"] == "bad.csv" and payload["reason"]
    assert any(line.startswith("refused bad.csv") for line in result.lines())


def test_drifted_batch_emits_drift(inbox, sent: Sent, mnist_train, mnist_test) -> None:
    paths: DataPaths = inbox["paths"]
    network = NeuralNetwork(NetworkConfig())
    network.train_epoch(mnist_train[0][:10000], mnist_train[1][:10000])
    accuracy = float(np.mean(network.predict(mnist_test[0][:1000]) == mnist_test[1][:1000]))
    ModelRegistry(paths.models).register(
        network, metrics={"accuracy": accuracy}, test_sha256=SHA, train_sha256=SHA
    )
    pixels, labels = mnist_train[0][20000:20400], mnist_train[1][20000:20400]
    drop(inbox["incoming"], "plain.csv", pixels, labels)
    shifted = simulate.offcentre(pixels, np.random.default_rng(0))
    drop(inbox["incoming"], "sim-offcentre-01.csv", shifted, labels)

    result = one_pass(inbox)
    by_file: dict[str, list[str]] = {}
    for name, _, payload in sent:
        by_file.setdefault(payload["file"], []).append(name)
    assert by_file == {
        "plain.csv": ["mnistnn.batch.ingested"],
        "sim-offcentre-01.csv": ["mnistnn.batch.ingested", "mnistnn.data.drift"],
    }
    ingested = {payload["file"]: payload for name, _, payload in sent if name.endswith("ingested")}
    assert ingested["plain.csv"]["drift"] is False
    assert ingested["sim-offcentre-01.csv"]["drift"] is True
    [drift] = [payload for name, _, payload in sent if name == "mnistnn.data.drift"]
    assert drift["drift"] is True and drift["drift_reason"]
    assert drift["rows"] == 400
    assert any("DRIFT" in line for line in result.lines())


def test_without_a_server_ingests_and_says_so(inbox, monkeypatch, mnist_train) -> None:
    def fail(*args: object, **kwargs: object) -> bool:
        raise AssertionError("no server, yet an event was emitted")

    monkeypatch.setattr(events, "server_available", lambda: None)
    monkeypatch.setattr(events, "emit", fail)
    drop(inbox["incoming"], "batch-a.csv", mnist_train[0][:100], mnist_train[1][:100])
    result = one_pass(inbox)
    assert [batch["status"] for batch in result.new] == ["accepted"]
    assert result.sent_to is None
    assert result.lines()[-1].startswith("no Prefect server: events not sent")


def test_server_available_needs_an_api_url() -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert events.server_available() is None


def test_settling_files_wait_for_the_next_pass(inbox, sent: Sent, mnist_train) -> None:
    write_mnist_csv(inbox["incoming"] / "writing.csv", mnist_train[0][:20], mnist_train[1][:20])
    options = {**inbox["options"], "settle_seconds": 30.0}
    assert watch_module.watch_once(inbox["incoming"], inbox["paths"], **options).events == []
    assert sent == []


@pytest.mark.usefixtures("prefect_harness")
def test_the_flow_does_one_pass(inbox, sent: Sent, mnist_train) -> None:
    drop(inbox["incoming"], "batch-a.csv", mnist_train[0][:100], mnist_train[1][:100])
    result = watch_module.watch_inbox(
        data_dir=str(inbox["paths"].root), train_csv=inbox["options"]["train_csv"], settle_seconds=0
    )
    assert [name for name, _, _ in sent] == ["mnistnn.batch.ingested"]
    assert result["incoming"] == str(inbox["incoming"].absolute())
    assert [batch["file"] for batch in result["new"]] == ["batch-a.csv"]


def test_cli_once_offline_exits_0(inbox, mnist_train) -> None:
    """`mnistnn watch --once` with no Prefect server configured: ingests, says so, exits 0."""
    drop(inbox["incoming"], "batch-a.csv", mnist_train[0][:100], mnist_train[1][:100])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PYTHONPATH"] = str(ROOT)
    env["PREFECT_HOME"] = str(inbox["paths"].root / "prefect-home")
    command = [
        *(sys.executable, "-m", "flows.cli", "--data-dir", str(inbox["paths"].root), "watch"),
        *("--once", "--settle-seconds", "0", "--train-csv", inbox["options"]["train_csv"]),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "accepted batch-a.csv: 100 rows" in done.stdout
    assert "no Prefect server: events not sent" in done.stdout


def test_cli_polls_until_sigterm_and_exits_0(inbox) -> None:
    """Without --once: a pass every --interval seconds, and SIGTERM ends it cleanly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PYTHONPATH=str(ROOT), PREFECT_HOME=str(inbox["paths"].root / "prefect-home"))
    command = [
        *(sys.executable, "-m", "flows.cli", "--data-dir", str(inbox["paths"].root), "watch"),
        *("--interval", "0.2", "--train-csv", inbox["options"]["train_csv"]),
    ]
    process = spawn(command, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]  # two passes
        assert all(line.startswith(b"nothing new in ") for line in lines), lines
    finally:
        stop(process, signal.SIGTERM)
        _, errors = process.communicate()  # closes the pipes
    assert process.returncode == 0, errors


def test_the_no_server_line_names_each_event_once_with_a_count() -> None:
    """200 batches, 3 flagged: one short line, not 203 event names."""
    resource = events.batch_resource(SHA, "x.csv")
    planned = [watch_module.PlannedEvent(events.BATCH_INGESTED, resource, {})] * 200
    planned += [watch_module.PlannedEvent(events.DATA_DRIFT, resource, {})] * 3
    new = [{"status": "refused", "file": "x.csv", "reason": "bad"}]
    result = watch_module.WatchPass(incoming="in", new=new, events=planned)
    line = result.lines()[-1]
    assert line == (
        "no Prefect server: events not sent (200 x mnistnn.batch.ingested, 3 x mnistnn.data.drift)"
    )
    sent = watch_module.WatchPass(incoming="in", new=new, events=planned, sent_to="http://s")
    assert sent.lines()[-1].endswith("(200 x mnistnn.batch.ingested, 3 x mnistnn.data.drift)")
