"""The pull step of `deployments/prefect.yaml`: where a worker's flow run starts.

Prefect starts each flow run of a process worker in a temporary folder; the entrypoint
(`flows/training.py`) and the default `data/` are relative to a checkout of this repository. The
run starts in `$MNISTNN_HOME` when the worker sets it (one checkout per machine, as the S3
instructions do), else in the checkout the worker's `flows` package is installed from (`make
install` installs it editable, so that is the repository the worker was started from). Anything
else fails the run at once, in one line saying what to set.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The files that make a folder a checkout of this repository.
CHECKOUT_MARKERS = ("pyproject.toml", "flows/training.py")


class NoCheckoutError(RuntimeError):
    """The flow run has no checkout to start in."""


def run_in_checkout() -> dict[str, str]:
    """Change to the checkout (see the module's docstring); returns it as `directory`."""
    home = os.environ.get("MNISTNN_HOME", "").strip()
    if home:
        folder = Path(home).expanduser().resolve()
        if not is_checkout(folder):
            raise NoCheckoutError(
                f"MNISTNN_HOME={home} is not a checkout of mnistnn (no pyproject.toml and "
                "flows/training.py there): set it to the repository the worker runs flows from"
            )
    else:
        folder = Path(__file__).resolve().parent.parent
        if not is_checkout(folder):
            raise NoCheckoutError(
                f"mnistnn is installed in {folder}, not from a checkout: set MNISTNN_HOME to the "
                "repository the worker runs flows from"
            )
    os.chdir(folder)
    return {"directory": str(folder)}


def is_checkout(folder: Path) -> bool:
    return all((folder / marker).is_file() for marker in CHECKOUT_MARKERS)
