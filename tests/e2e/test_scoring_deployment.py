"""`score-incoming` as a user runs it: deployed from prefect.yaml, run by a process worker.

Against a real `prefect server`: deploy the file, check the hourly schedule and the concurrency
limit, register a small model straight through `ModelRegistry` in a temporary data dir, drop a
CSV and a folder of images (one of them corrupt) into its inbox, then `prefect deployment run`
it and let `prefect worker start --run-once` score it. The predictions must equal what
`mnistnn predict` says about the same files, the corrupt image must be listed as failed, and a
second run must do nothing. Every process started here is stopped by its PID.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.e2e.client import client_call
from tests.e2e.conftest import BIN, REPO, PrefectServer
from tests.e2e.test_deployment import run_worker_once
from tests.predict.scoring_fixtures import register, trained, write_images, write_pixel_csv

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DEPLOYMENT = "mnist-batch-predict/score-incoming"
POOL = "mnistnn-local"
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"


@pytest.fixture(scope="module")
def deployed(prefect_server: PrefectServer) -> dict[str, Any]:
    """The pool and every deployment of prefect.yaml; schedules paused."""
    prefect = str(BIN / "prefect")
    # `work-pool ls` truncates names to the terminal's width: create (or keep) it unconditionally
    prefect_server.run(prefect, "work-pool", "create", POOL, "--type", "process", "--overwrite")
    prefect_server.run(
        prefect, "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_YAML)
    )
    deployment = client_call(prefect_server, "deployment", DEPLOYMENT)
    client_call(prefect_server, "pause_schedules", DEPLOYMENT)  # never score the repo's data/
    client_call(prefect_server, "pause_schedules", "mnist-training/nightly-retrain")
    return deployment


def run_scoring(server: PrefectServer, data_dir: Path, log: Path) -> dict[str, Any]:
    output = server.run(
        str(BIN / "prefect"),
        "deployment",
        "run",
        DEPLOYMENT,
        f"--param=data_dir={json.dumps(str(data_dir))}",
    ).stdout
    found = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert found, output
    run_worker_once(server, log)
    run = client_call(server, "flow_run", found.group(1))
    assert run["state"] == "COMPLETED", f"{run['message']}\n{log.read_text()[-3000:]}"
    return {artifact["key"]: artifact for artifact in run["artifacts"]}


def mnistnn(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "mnistnn"), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_deploy_creates_the_hourly_scoring_deployment(deployed: dict[str, Any]) -> None:
    assert deployed["entrypoint"] == "flows/scoring.py:batch_predict"
    assert deployed["work_pool_name"] == POOL
    [schedule] = deployed["schedules"]
    assert schedule["schedule"]["cron"] == "0 * * * *"
    assert deployed["global_concurrency_limit"]["limit"] == 1
    # a deployment stores only data locations: the threshold is the declaration's default, so a
    # run's `-p threshold=...` or the UI form is what runs
    assert deployed["parameters"] == {"data_dir": "data"}


def test_worker_scores_the_inbox_like_predict_then_does_nothing(
    prefect_server: PrefectServer, deployed: dict[str, Any], mnist_train, mnist_test, tmp_path
) -> None:
    data_dir = tmp_path / "data"
    network = trained(mnist_train[0][:3000], mnist_train[1][:3000], hidden=20)
    assert register(data_dir / "models", network, 0.9) == "v0001"
    inbox = data_dir / "unlabelled"
    csv_file = write_pixel_csv(inbox / "kaggle.csv", mnist_test[0][:500])
    write_images(inbox / "photos", mnist_test[0][500:508])  # + photos/broken.png

    artifacts = run_scoring(prefect_server, data_dir, tmp_path / "worker-1.log")
    assert artifacts["mnist-batch-predictions"]["type"] == "table"
    assert artifacts["mnist-batch-predict-report"]["type"] == "markdown"
    table = {row["file"]: row for row in json.loads(artifacts["mnist-batch-predictions"]["data"])}
    assert (table["kaggle.csv"]["scored"], table["kaggle.csv"]["failed"]) == (500, 0)
    assert (table["photos"]["scored"], table["photos"]["failed"]) == (8, 1)
    report = artifacts["mnist-batch-predict-report"]["data"]
    assert "photos/broken.png" in report and "Model **v0001**" in report

    outputs = sorted((data_dir / "predictions").glob("*.parquet"))
    assert len(outputs) == 2 and all(p.name.endswith("-v0001.parquet") for p in outputs)
    by_source: dict[str, Any] = {}
    for path in outputs:
        for row in pq.read_table(path).to_pylist():
            by_source[row["source"] if row["row"] is None else f"csv:{row['row']}"] = row

    predicted = mnistnn(data_dir, "predict", "--csv", str(csv_file))
    assert predicted.returncode == 0, predicted.stderr
    for image_id, label in csv.reader(predicted.stdout.splitlines()[1:]):
        assert by_source[f"csv:{image_id}"]["predicted"] == int(label)
    images = mnistnn(data_dir, "predict", str(inbox / "photos"), "--json")
    assert images.returncode == 2  # the corrupt image
    for item in json.loads(images.stdout):
        row = by_source[f"photos/{Path(item['path']).name}"]
        assert row["predicted"] == item["digit"]
        assert row["confidence"] == pytest.approx(item["confidence"], rel=1e-6)
    [failures] = (data_dir / "predictions").glob("*.failures.csv")
    assert "photos/broken.png" in failures.read_text()

    stamps = {p: p.stat().st_mtime_ns for p in (data_dir / "predictions").iterdir()}
    artifacts = run_scoring(prefect_server, data_dir, tmp_path / "worker-2.log")
    rows = json.loads(artifacts["mnist-batch-predictions"]["data"])
    assert {row["status"] for row in rows} == {"reused (already scored)"}
    assert {p: p.stat().st_mtime_ns for p in (data_dir / "predictions").iterdir()} == stamps
