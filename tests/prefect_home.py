"""New Prefect homes without the database migrations: a migrated database, copied.

A Prefect server's first start on a new PREFECT_HOME runs every Alembic migration of its SQLite
database (20-40 s on a loaded 2-core machine); on a database already at head the same start only
checks the revision. So the migrations run once per Prefect version, into a template kept in
the user's cache folder (`$XDG_CACHE_HOME/mnistnn`, else `~/.cache/mnistnn`), and every new home
(the e2e server's, a CLI run's, a benchmark's, the test harness's) starts with a copy of it. A
file lock keeps two pytest workers, or a benchmark and a test, from making it twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from unittest import mock

#: Variables that would point the migration at another database than the template's.
DATABASE_URL_VARIABLES = (
    "PREFECT_API_DATABASE_CONNECTION_URL",
    "PREFECT_SERVER_DATABASE_CONNECTION_URL",
)


def cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mnistnn"


def template_database() -> Path:
    """The SQLite file of a Prefect home migrated to this Prefect version's head (made once)."""
    folder = cache_folder()
    target = folder / f"prefect-{version('prefect')}.db"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "prefect-template.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not target.exists():  # nobody made it while we waited
            _migrate_into(target)
    return target


def _migrate_into(target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        env = {k: v for k, v in os.environ.items() if k not in DATABASE_URL_VARIABLES}
        env.update(PREFECT_HOME=scratch, PREFECT_SERVER_ANALYTICS_ENABLED="false")
        prefect = Path(sys.executable).parent / "prefect"
        done = subprocess.run(
            [str(prefect), "server", "database", "upgrade", "--yes"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"prefect server database upgrade failed:\n{done.stderr[-3000:]}")
        partial = Path(scratch) / "template.db"
        # the backup API gives one self-contained file, whatever is still in the WAL
        with (
            contextlib.closing(sqlite3.connect(Path(scratch) / "prefect.db")) as source,
            contextlib.closing(sqlite3.connect(partial)) as copy,
        ):
            source.backup(copy)
        os.replace(partial, target)  # atomic: a reader sees no file or the whole file


def seed_database(path: Path) -> Path:
    """Copy the migrated template to `path` (a database file that does not exist yet)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template_database(), path)
    return path


def new_prefect_home(home: Path) -> Path:
    """`home` as a new PREFECT_HOME whose database (`prefect.db`) is already migrated."""
    seed_database(home / "prefect.db")
    return home


@contextlib.contextmanager
def seeded_test_harness(server_startup_timeout: int = 180) -> Iterator[None]:
    """Prefect's `prefect_test_harness`, its temporary database a copy of the template.

    The harness makes its folder with `tempfile.mkdtemp` and names the database
    `prefect-test.db` in it; the folder it gets here already holds that file. (Should a Prefect
    release rename the file, the copy goes unused and the server migrates as before; should it
    stop calling `mkdtemp`, the patch fails loudly.)
    """
    from prefect.testing import utilities

    def seeded_mkdtemp() -> str:
        folder = tempfile.mkdtemp()
        seed_database(Path(folder) / "prefect-test.db")
        return folder

    with contextlib.ExitStack() as stack:
        with mock.patch.object(utilities, "mkdtemp", seeded_mkdtemp):
            stack.enter_context(
                utilities.prefect_test_harness(server_startup_timeout=server_startup_timeout)
            )
        yield
