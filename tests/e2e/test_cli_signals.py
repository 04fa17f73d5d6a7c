"""SIGTERM or SIGKILL to `mnistnn train`'s own PID: no Prefect server is left behind, and the
dead flow run is marked Crashed (at once on SIGTERM; by the resuming run after SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.processes import BIN, REPO, spawn, stop, train_command
from tests.prefect_home import new_prefect_home

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STATE_SCRIPT = """
import sys
from uuid import UUID
from flows.server import prefect_api
from prefect.client.orchestration import get_client
with prefect_api():
    with get_client(sync_client=True) as client:
        print(client.read_flow_run(UUID(sys.argv[1])).state.type.value)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def server_port(pid: int) -> int:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return int(args[args.index(b"--port") + 1])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_signal_leaves_no_server_and_the_run_crashed(
    train_10k_csv: Path, small_csvs, tmp_path: Path, sig: signal.Signals
) -> None:
    pid_file = tmp_path / "server.pid"
    env = {
        **os.environ,
        "PREFECT_HOME": str(new_prefect_home(tmp_path / "prefect-home")),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MNISTNN_PREFECT_AUTODETECT": "0",
        "MNISTNN_SERVER_PID_FILE": str(pid_file),
    }
    env.pop("PREFECT_API_URL", None)
    data_dir = tmp_path / "data"
    command = train_command(
        data_dir, train_10k_csv, small_csvs[1], "--epochs", "6", "--hidden", "40"
    )
    log = (tmp_path / "cli.log").open("wb")
    process = spawn(command, env, log=log)
    try:
        deadline = time.monotonic() + 240
        while not (found := list(data_dir.glob("runs/*/checkpoints/epoch-0001.json"))):
            assert process.poll() is None, (tmp_path / "cli.log").read_text()
            assert time.monotonic() < deadline, "no checkpoint of epoch 1 within 240 s"
            time.sleep(0.05)
        run_dir = found[0].parents[1]
        server_pid = int(pid_file.read_text())
        port = server_port(server_pid)
        flow_run_id = json.loads((run_dir / "flow_run.json").read_text())["flow_run_id"]
        os.kill(process.pid, sig)  # the CLI's own PID, as a user does
        process.wait(timeout=60)
    finally:
        stop(process)
        log.close()
    assert not (run_dir / "metrics.json").exists(), "the run finished before the signal"
    deadline = time.monotonic() + 30
    while (alive(server_pid) or listening(port)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(server_pid), "the temporary Prefect server outlived the CLI"
    assert not listening(port)

    if sig == signal.SIGKILL:  # nobody could mark it: the resuming run does
        resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert json.loads(resumed.stdout.strip().splitlines()[-1])["ran"] is True
    state = subprocess.run(
        [str(BIN / "python"), "-c", STATE_SCRIPT, flow_run_id],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert state.returncode == 0, state.stderr[-3000:]
    assert state.stdout.strip().splitlines()[-1] == "CRASHED", (tmp_path / "cli.log").read_text()[
        -3000:
    ]
