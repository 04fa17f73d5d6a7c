"""The S3 Store over boto3: one PUT per write, conditional PUTs (If-None-Match / If-Match) for CAS.

Errors become one-line StorageErrors naming the URL (never a secret): transient ones (endpoint
unreachable, connection lost, 5xx, throttling) as StorageUnavailable, an OSError, so the
pipeline retries them; permanent ones (missing bucket, access denied) as plain StorageError.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final

import boto3
import botocore.config
import botocore.exceptions
import botocore.loaders
import botocore.session

from mnistnn.core.lease import Lease, object_lease
from mnistnn.core.s3_listing import fast_listing, first_parse, timestamp
from mnistnn.core.storage import Store, backoff_delay, check_key
from mnistnn.errors import NotFound, StorageError, StorageUnavailable

# Bounded, so a dead endpoint fails in seconds; the pipeline's own task retries take over.
_CONFIG = botocore.config.Config(
    retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30
)
_PATH_STYLE = _CONFIG.merge(botocore.config.Config(s3={"addressing_style": "path"}))

#: Bytes of an object's body read at a time by `read_into` (a download's whole memory).
READ_CHUNK: Final = 1 << 20
_AWS_HOST = re.compile(r"\.amazonaws\.com(\.cn)?(:\d+)?(/|$)")
_MISSING_KEY = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden"}
)
_BUSY = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable"}
)


class _Conflict(StorageError):
    """A conditional write's precondition failed (412): the caller returns False/None."""


def map_error(exc: Exception, url: str, endpoint: str) -> StorageError:
    """The one-line StorageError for a botocore exception raised while accessing `url`."""
    bucket = url.removeprefix("s3://").partition("/")[0]
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _MISSING_KEY:
            return NotFound(f"{url}: no such key")
        if code == "NoSuchBucket":
            return StorageError(f"{url}: bucket '{bucket}' does not exist")
        if code == "PreconditionFailed" or status == 412:
            return _Conflict(f"{url}: changed concurrently (precondition failed)")
        if code in _DENIED or status == 403:
            return StorageError(
                f"{url}: access denied ({code}; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
            )
        if code in _BUSY or status >= 500 or status == 429:
            return StorageUnavailable(
                f"{url}: the S3 endpoint {endpoint} is unavailable ({code or status}); retry later"
            )
        message = " ".join(str(error.get("Message", "")).split())  # one line
        return StorageError(f"{url}: S3 error {code or status}: {message}")
    if isinstance(
        exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        return StorageError(
            f"{url}: no S3 credentials (set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
        )
    if isinstance(
        exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError
    ):
        return StorageUnavailable(f"{url}: cannot reach the S3 endpoint {endpoint}")
    transient = (
        botocore.exceptions.HTTPClientError,
        botocore.exceptions.ConnectionError,
        botocore.exceptions.IncompleteReadError,
        botocore.exceptions.ResponseStreamingError,
    )
    if isinstance(exc, transient):
        return StorageUnavailable(
            f"{url}: lost the connection to the S3 endpoint {endpoint} ({type(exc).__name__})"
        )
    return StorageError(f"{url}: {' '.join(str(exc).split())}")


class S3Store(Store):
    """A Store over `s3://bucket/prefix`; each store has its own boto3 session and client."""

    def __init__(self, bucket: str, prefix: str, *, endpoint_url: str | None = None) -> None:
        self._client: Any = _new_client(endpoint_url)
        self.bucket, self.prefix = bucket, prefix
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.endpoint = _redact(str(self._client.meta.endpoint_url))
        self._bucket_seen = False

    def join(self, key: str) -> str:
        return f"{self.url}/{check_key(key)}"

    def read_bytes(self, key: str) -> bytes:
        return self._get(key)[0]

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except NotFound:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._head(key)["ContentLength"])

    def version(self, key: str) -> str:
        return str(self._head(key)["ETag"])  # the token `_get` returns, so they compare

    def write_bytes(self, key: str, data: bytes) -> None:
        self._call(self.join(key), "put_object", Key=self._object(key), Body=data)

    def list(self, prefix: str = "") -> list[str]:
        return sorted(self._listing(prefix))

    def list_tags(self, prefix: str = "") -> dict[str, str]:
        return {key: item["ETag"] for key, item in sorted(self._listing(prefix).items())}

    def list_info(self, prefix: str = "") -> dict[str, tuple[int, float]]:
        return {
            key: (int(item["Size"]), item["LastModified"].timestamp())
            for key, item in sorted(self._listing(prefix).items())
        }

    def list_after(self, prefix: str, after: str, limit: int = 1000) -> tuple[Sequence[str], bool]:
        check_key(prefix, prefix=True)
        root = self.prefix + "/" if self.prefix else ""
        page = self._call(
            f"{self.url}/{prefix}",
            "list_objects_v2",
            Prefix=root + prefix,
            StartAfter=root + after,
            MaxKeys=limit,
        )
        keys = [item["Key"][len(root) :] for item in page.get("Contents", [])]
        return keys, bool(page.get("IsTruncated"))

    def _listing(self, prefix: str) -> dict[str, dict[str, Any]]:
        """key -> listing entry (ETag, Size, LastModified) of every object under `prefix`."""
        check_key(prefix, prefix=True)
        root = self.prefix + "/" if self.prefix else ""
        url = f"{self.url}/{prefix}"
        items: dict[str, dict[str, Any]] = {}
        token: dict[str, str] = {}
        while True:  # paginated by hand, so every page goes through the error mapping
            page = self._call(url, "list_objects_v2", Prefix=root + prefix, **token)
            for item in page.get("Contents", []):
                items[item["Key"][len(root) :]] = {**item, "ETag": str(item["ETag"])}
            if not page.get("IsTruncated"):
                return items
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def delete(self, key: str) -> None:
        self._call(self.join(key), "delete_object", Key=self._object(key))

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            return self._get(key)
        except NotFound:
            return None

    def lease(
        self, key: str, owner: str, ttl: float = 60.0, timeout: float = 3600.0
    ) -> AbstractContextManager[Lease]:
        return object_lease(self, key, owner, ttl, timeout)

    def create_versioned(self, key: str, data: bytes) -> str | None:
        return self._put_if(key, data, IfNoneMatch="*")

    def replace_versioned(self, key: str, data: bytes, token: str) -> str | None:
        try:
            return self._put_if(key, data, IfMatch=token)
        except NotFound:  # AWS answers 404 to If-Match on a missing key
            return None

    def delete_if(self, key: str, token: str) -> bool:
        try:
            self._call(self.join(key), "delete_object", Key=self._object(key), IfMatch=token)
        except (_Conflict, NotFound):
            return False
        return True

    def _put_if(self, key: str, data: bytes, **condition: str) -> str | None:
        url = self.join(key)
        for attempt in range(4):
            try:
                response = self._call(
                    url, "put_object", Key=self._object(key), Body=data, **condition
                )
                return str(response["ETag"])
            except _Conflict:
                return None
            except StorageError as exc:
                # AWS: 409 ConditionalRequestConflict = a concurrent conditional write is in
                # flight; its outcome is unknown, so ask again rather than answer False
                if "ConditionalRequestConflict" not in str(exc) or attempt == 3:
                    raise
                time.sleep(backoff_delay(attempt, base=0.05))
        raise AssertionError("unreachable")

    def _get(self, key: str) -> tuple[bytes, str]:
        url = self.join(key)
        response = self._call(url, "get_object", Key=self._object(key))
        try:
            data = response["Body"].read()
        except botocore.exceptions.BotoCoreError as exc:
            raise map_error(exc, url, self.endpoint) from exc
        return bytes(data), str(response["ETag"])

    def read_into(self, key: str, write: Callable[[bytes], object]) -> str:
        """The body streamed (botocore's StreamingBody, READ_CHUNK at a time) into `write`."""
        url = self.join(key)
        response = self._call(url, "get_object", Key=self._object(key))
        try:
            for chunk in response["Body"].iter_chunks(READ_CHUNK):
                write(chunk)
        except botocore.exceptions.BotoCoreError as exc:
            raise map_error(exc, url, self.endpoint) from exc
        finally:
            response["Body"].close()
        return str(response["ETag"])

    def _head(self, key: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(self.join(key), "head_object", Key=self._object(key))
        return result

    def _object(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, url: str, method: str, **kwargs: Any) -> Any:
        """`client.<method>(Bucket=..., **kwargs)`, its errors mapped to StorageErrors."""
        try:
            response = getattr(self._client, method)(Bucket=self.bucket, **kwargs)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            error = map_error(exc, url, self.endpoint)
            # A HEAD 404 has no body to say the *bucket* is missing, and some servers answer
            # AccessDenied for a PUT into a missing bucket: ask once per store.
            ambiguous = method == "head_object" and isinstance(error, NotFound)
            if (ambiguous or "access denied" in str(error)) and not self._bucket_seen:
                self._check_bucket(url)
            raise error from exc
        self._bucket_seen = True
        return response

    def _check_bucket(self, url: str) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchBucket"):
                raise StorageError(f"{url}: bucket '{self.bucket}' does not exist") from exc
            return
        except botocore.exceptions.BotoCoreError:
            return
        self._bucket_seen = True


_CLIENT_LOCK = threading.Lock()
_LOADER = botocore.loaders.create_loader()


def _new_client(endpoint_url: str | None) -> Any:
    """A client of its own (own connection pool) for one store, in ~50 ms.

    A fresh session per client re-reads the environment (credentials, endpoint); sharing the
    loader of the service model avoids re-parsing it each time (which costs ~0.2 s).
    """
    custom = (
        endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )
    with _CLIENT_LOCK:  # session and loader set-up is not documented as thread-safe
        core = botocore.session.Session()
        core.register_component("data_loader", _LOADER)
        # timestamps without dateutil, and listings read straight from their XML (s3_listing)
        core.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=timestamp
        )
        first_parse(core, fast_listing)
        session = boto3.session.Session(botocore_session=core)
        # S3-compatible servers want path-style URLs ("bucket.host" rarely resolves there);
        # AWS itself keeps its default
        client = session.client(
            "s3", endpoint_url=endpoint_url, config=_PATH_STYLE if custom else _CONFIG
        )
        if not custom and not _AWS_HOST.search(str(client.meta.endpoint_url)):
            client = session.client("s3", endpoint_url=endpoint_url, config=_PATH_STYLE)
    return client


def _redact(endpoint: str) -> str:
    """The endpoint without any user:password@ part, for messages."""
    return re.sub(r"//[^/@]*@", "//", endpoint)
