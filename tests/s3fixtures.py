"""S3 fixtures for every test folder: one SeaweedFS per session, a fresh bucket per test.

Imported by tests/conftest.py (so `seaweed`, `s3_env`, `s3_url`, `s3_store`, `store_url`, `store`
and `local_store` are available everywhere); the server starts only when a test asks for it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnistnn.core.storage import Store, open_store
from tests.seaweed import ACCESS_KEY, REGION, SECRET_KEY, SeaweedServer, start_seaweed


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """A running SeaweedFS S3 server (restarted by fault tests, so use its current endpoint)."""
    server = start_seaweed(tmp_path_factory.mktemp("seaweed"))
    yield server
    server.stop()


#: AWS variables of this machine that must not reach a client of the test server.
FOREIGN_AWS = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_PROFILE")


def aws_environment(server: SeaweedServer) -> dict[str, str]:
    """The standard AWS variables pointed at `server` (unset FOREIGN_AWS as well)."""
    return {
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",  # never probe 169.254.169.254
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }


def use_aws_environment(server: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point this process's AWS variables at `server`, and nothing of this machine's."""
    for name, value in aws_environment(server).items():
        monkeypatch.setenv(name, value)
    for name in FOREIGN_AWS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3_env(seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> SeaweedServer:
    """The standard AWS variables pointed at the test server, and nothing of this machine's."""
    use_aws_environment(seaweed, monkeypatch)
    return seaweed


@pytest.fixture(scope="module")
def s3_module_env(seaweed: SeaweedServer) -> Iterator[SeaweedServer]:
    """`s3_env` for a whole module (for module-scoped set-ups in a bucket)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_aws_environment(seaweed, monkeypatch)
        yield seaweed


def new_bucket(server: SeaweedServer) -> str:
    """Create a uniquely named bucket on `server` and return its name."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_url(s3_env: SeaweedServer) -> str:
    """`s3://<fresh bucket>/root`: the prefix checks that keys are relative to it."""
    return f"s3://{new_bucket(s3_env)}/root"


@pytest.fixture
def s3_store(s3_url: str) -> Store:
    return open_store(s3_url)


@pytest.fixture
def local_store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "store")


@pytest.fixture(params=["local", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The root of an empty store of each backend (open more stores on it for more clients)."""
    if request.param == "local":
        return str(tmp_path / "store")
    url: str = request.getfixturevalue("s3_url")
    return url


@pytest.fixture
def store(store_url: str) -> Store:
    return open_store(store_url)
