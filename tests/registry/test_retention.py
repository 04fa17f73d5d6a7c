"""Retention (`mnistnn gc`): frees history, never what the kept models need, never a live run."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.history_sim import EPOCHS, History, retrain
from flows.cli.main import main
from mnistnn.core import locations
from mnistnn.errors import ConfigError
from mnistnn.model.metrics import accuracy
from mnistnn.registry import retention
from mnistnn.registry.store import ModelRegistry
from mnistnn.runs.folders import RunFolder, open_run, run_lock

DAY = retention.DAY
NIGHTS = 12


def _history(root: str | Path, scratch: Path, pool, nights: int) -> History:  # type: ignore[no-untyped-def]
    history = History(root, scratch, (pool[0][:4000], pool[1][:4000]))
    for night in range(nights):
        history.night(night, score=night % 4 == 3, report=False)
    return history


def _served(history: History, version: str) -> tuple[str, bytes, float]:
    """What a version serves: its weights' sha256, its outputs on the test rows, its accuracy."""
    registry = ModelRegistry(history.paths.models)
    network = registry.load(version)
    pixels, labels = history.pixels[-200:], history.labels[-200:]
    outputs = network.query(pixels)
    return registry.get(version).weights_sha256, outputs.tobytes(), accuracy(outputs, labels)


def _shown(data_dir: str, version: str, capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    capsys.readouterr()
    assert main(["--data-dir", data_dir, "models", "show", version, "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_gc_frees_history_and_keeps_what_the_models_need(
    tmp_path: Path, mnist_train, capsys: pytest.CaptureFixture[str]
) -> None:
    history = _history(tmp_path / "data", tmp_path / "scratch", mnist_train, NIGHTS)
    data_dir = str(history.paths.root)
    policy = retention.Policy(keep=3)
    versions = ModelRegistry(history.paths.models).versions()
    kept = retention.kept_versions(versions, 3)
    assert "champion" in kept.values() and len(versions) == NIGHTS
    served = {version: _served(history, version) for version in kept}
    shown = {version: _shown(data_dir, version, capsys) for version in kept}
    before = history.disk()
    later = time.time() + 100 * DAY  # everything is old: only the policy keeps it
    listed = retention.plan(history.paths, policy, now=later)
    assert history.disk() == before  # listing deletes nothing
    reasons = {item.reason.split(",")[0] for item in listed.items}
    assert {"checkpoint of a finished run", "old predictions"} <= reasons
    assert "snapshot manifest no kept run uses" in reasons  # the freed versions' snapshots
    assert any(reason.startswith("run of v") for reason in reasons)
    assert all(item.size > 0 for item in listed.items if not item.key.endswith("/"))

    done = retention.apply(history.paths, policy, now=later)
    after = history.disk()
    assert done.deleted and not done.skipped and after < before
    assert before - after >= 0.9 * sum(i.size for i in done.items if i.key.startswith("runs/"))
    for version in kept:
        assert _served(history, version) == served[version]
        assert _shown(data_dir, version, capsys) == shown[version]
    # the champion's run trains again bit-identically from its kept snapshot
    champion = ModelRegistry(history.paths.models).champion()
    assert champion is not None and champion.run_dir is not None
    run = json.loads(locations.read_bytes(RunFolder(champion.run_dir).run_json))
    again = retrain(tmp_path / "again", run, champion.config)
    assert hashlib.sha256(again).hexdigest() == champion.weights_sha256
    # the newest predictions of each input stay; the gc run is recorded
    names = locations.names_in(history.paths.predictions)
    inputs = {n[:16] for n in locations.names_in(history.paths.unlabelled)}
    assert len({n[:16] for n in names if n.endswith(".parquet")}) == len(inputs) > 0
    [log] = locations.list_folder(locations.join(history.paths.models, "gc-log"))
    record = json.loads(locations.read_bytes(locations.join(history.paths.models, "gc-log", log)))
    assert record["deleted"] == done.deleted and record["freed_bytes"] == done.freed_bytes
    # a second gc finds nothing more to free in the runs
    assert not [i for i in retention.plan(history.paths, policy, now=later).items if i.run]


def test_gc_skips_a_run_a_live_flow_holds(tmp_path: Path, mnist_train) -> None:
    """A run being trained (its lock held) is never touched, however old it looks."""
    from mnistnn.runs import steps

    history = _history(tmp_path / "data", tmp_path / "scratch", mnist_train, 2)
    folder = RunFolder(Path(history.paths.runs) / "live-run-0001")
    started, release = threading.Event(), threading.Event()
    trained: list[int] = []
    parquet = str(Path(history.paths.processed) / "train.parquet")

    def live_run() -> None:
        from benchmarks.history_sim import CONFIG
        from mnistnn.data.ingest import ingest_csv

        summary = ingest_csv(history.train_csv, history.paths.processed)
        with run_lock(folder):
            open_run(folder, CONFIG, summary.sha256, summary.sha256)
            steps.train_epoch(folder, 1, CONFIG, summary.parquet, threads=1)
            started.set()
            release.wait(60)
            steps.train_epoch(folder, 2, CONFIG, summary.parquet, threads=1)
            trained.append(2)

    worker = threading.Thread(target=live_run)
    worker.start()
    assert started.wait(60)
    done = retention.apply(history.paths, retention.Policy(keep=1), now=time.time() + 30 * DAY)
    release.set()
    worker.join(60)
    assert [s for s in done.skipped if "live-run-0001" in s]
    assert "runs/live-run-0001/" not in done.deleted and trained == [2]
    assert Path(folder.path, "checkpoints", "epoch-0002.npz").is_file()
    assert Path(folder.path, "run.json").is_file() and not Path(parquet).exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--keep", "0"], "keep must be an integer >= 1"),
        (["--prediction-days", "-1"], "prediction_days must be a finite number of days >= 0"),
        (["--run-days", "nan"], "run_days must be a finite number of days >= 0"),
    ],
)
def test_bad_retention_fails_in_one_line_before_anything(
    tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    (data / "processed").mkdir(parents=True)
    orphan = data / "processed" / ("0" * 16 + ".parquet")
    orphan.write_bytes(b"x")
    assert main(["--data-dir", str(data), "gc", "--apply", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mnistnn: error: ") and message in err and "\n" not in err
    assert orphan.exists()
    with pytest.raises(ConfigError, match="keep must be"):
        retention.Policy(keep=0).check()


def test_gc_lists_with_sizes_and_applies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    (data / "processed").mkdir(parents=True)
    (data / "processed" / ("a" * 16 + ".parquet")).write_bytes(np.zeros(1500, np.uint8).tobytes())
    assert main(["--data-dir", str(data), "gc"]) == 0
    out = capsys.readouterr().out
    assert f"processed/{'a' * 16}.parquet  1.5 kB  (Parquet no kept model needs)" in out
    assert "would free 1.5 kB in 1 item(s)" in out and "mnistnn gc --apply" in out
    assert main(["--data-dir", str(data), "gc", "--apply"]) == 0
    assert "freed 1.5 kB in 1 item(s)" in capsys.readouterr().out
    assert not (data / "processed" / ("a" * 16 + ".parquet")).exists()


def test_gc_on_s3(s3_url: str, tmp_path: Path, mnist_train) -> None:
    history = _history(s3_url + "/data", tmp_path / "scratch", mnist_train, 3)
    champion = ModelRegistry(history.paths.models).champion()
    assert champion is not None
    served = _served(history, champion.version)
    before = history.disk()
    done = retention.apply(history.paths, retention.Policy(keep=1), now=time.time() + 30 * DAY)
    assert done.deleted and history.disk() < before
    assert _served(history, champion.version) == served
    assert locations.list_folder(locations.join(history.paths.models, "gc-log"))
    run = json.loads(locations.read_bytes(RunFolder(champion.run_dir or "").run_json))
    again = retrain(tmp_path / "again", run, champion.config)
    assert hashlib.sha256(again).hexdigest() == champion.weights_sha256
    assert EPOCHS == 2


def test_the_readme_gc_commands_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The commands of the README's Retention section, as written, on an empty data folder."""
    from tests.conftest import ROOT

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Retention", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].split() for line in block.strip().splitlines()]
    assert [command[1:] for command in commands] == [["gc"], ["gc", "--apply"]]
    for command in commands:
        assert command[0] == ".venv/bin/mnistnn"
        assert main(["--data-dir", str(tmp_path / "data"), *command[1:]]) == 0
    assert "kept versions: none" in capsys.readouterr().out


def test_a_manifest_is_freed_only_when_no_kept_run_names_it_and_it_is_old() -> None:
    from mnistnn.registry.retention_files import unreferenced_manifests

    old, new = 1000.0, 5000.0
    inventory = {
        "snapshots/aaaaaaaaaaaaaaaa.json": (10, old),  # named by a kept run
        "snapshots/bbbbbbbbbbbbbbbb.json": (20, old),  # freed
        "snapshots/cccccccccccccccc.json": (30, new),  # a starting run's, not named yet
        "snapshots/inbox.json": (40, old),  # the ledger
        "processed/dddddddddddddddd.json": (50, old),
    }
    items = unreferenced_manifests(inventory, {"aaaaaaaaaaaaaaaa"}, before=2000.0)
    assert [(i.key, i.size) for i in items] == [("snapshots/bbbbbbbbbbbbbbbb.json", 20)]
