"""Which failures the pipeline's tasks retry: only what may pass by itself."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.states import Failed

from flows.tasks import is_transient
from mnistnn.errors import DataError, NotFound, StorageError, StorageUnavailable


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (OSError("disk hiccup"), True),
        (TimeoutError("slow"), True),
        (StorageUnavailable("s3://b/p: cannot reach the S3 endpoint"), True),
        (StorageError("s3://b/p: access denied"), False),
        (NotFound("s3://b/p/x: no such key"), False),
        (DataError("x.csv: line 3: label 12 is not in 0..9"), False),
        (ValueError("bad"), False),
    ],
)
def test_only_transient_failures_are_retried(error: Exception, retried: bool) -> None:
    state: Any = Failed(data=error)
    assert is_transient(None, None, state) is retried  # type: ignore[arg-type]
