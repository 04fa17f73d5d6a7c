"""Real Prefect processes on loopback: a server per session, stopped by its PID."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.processes import BIN, REPO, free_port, readme_command, spawn, stop
from tests.prefect_home import new_prefect_home


@dataclass(frozen=True)
class PrefectServer:
    """A running `prefect server start` and the environment that points at it."""

    url: str
    api_url: str
    home: Path
    env: dict[str, str]

    def run(
        self, *args: str, timeout: float = 300, cwd: Path = REPO
    ) -> subprocess.CompletedProcess[str]:
        """Run a command against this server; fail with its output when it fails."""
        result = subprocess.run(
            list(args), cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result


def _wait_healthy(api_url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"prefect server at {api_url} not healthy after {timeout} s")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """`prefect server start` on a free loopback port with a temporary PREFECT_HOME (its
    database already migrated: tests/prefect_home.py)."""
    home = new_prefect_home(tmp_path_factory.mktemp("prefect-home"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"{url}/api",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "2",  # 1 s polls cost the server and workers CPU
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        # services no test here needs, each a loop over the database every few seconds: runs
        # come from `deployment run` and automations (schedules stay paused), nothing is late,
        # paused, cancelled or leased (triggers, events and task runs stay on)
        **{
            f"PREFECT_SERVER_SERVICES_{service}_ENABLED": "false"
            for service in (
                "SCHEDULER",
                "LATE_RUNS",
                "PAUSE_EXPIRATIONS",
                "CANCELLATION_CLEANUP",
                "FOREMAN",
                "REPOSSESSOR",
                "CLEANUP_RECONCILER",
            )
        },
    }
    log = (home / "server.log").open("wb")
    # step 1 of the README's "Scheduled retraining", on a free port instead of 4200
    command = shlex.split(readme_command("Scheduled retraining", "server start"))
    assert command[command.index("--port") + 1] == "4200"
    command[command.index("--port") + 1] = str(port)
    process = spawn(command, env, log=log)
    try:
        _wait_healthy(f"{url}/api", process, timeout=180)  # ~70 s on a loaded machine
        yield PrefectServer(url=url, api_url=f"{url}/api", home=home, env=env)
    finally:
        stop(process)
        log.close()


__all__ = ["BIN", "REPO", "PrefectServer", "free_port", "stop"]
