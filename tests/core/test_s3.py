"""The S3 backend against SeaweedFS: races of conditional writes, error messages, a server crash."""

from __future__ import annotations

import time
from typing import Any

import botocore.config
import botocore.exceptions
import botocore.utils
import pytest

from mnistnn.core import s3_listing
from mnistnn.core.s3_listing import timestamp
from mnistnn.core.storage import Store, open_store
from mnistnn.core.storage_s3 import map_error
from mnistnn.errors import NotFound, StorageError, StorageUnavailable
from tests.core.test_storage import run_threads
from tests.seaweed import SeaweedServer, free_ports

URL = "s3://bucket/root/k.json"


@pytest.mark.parametrize(
    "text",
    ["2026-12-03T15:50:00.000Z", "2026-12-03T15:50:00+01:00", "Thu, 03 Dec 2026 15:50:00 GMT"],
)
def test_a_listings_timestamps_read_as_botocore_reads_them(text: str) -> None:
    """The fast parser of listings (ISO directly) gives the instant botocore's own gives."""
    parsed = timestamp(text)
    assert parsed.tzinfo is not None
    assert parsed.timestamp() == botocore.utils.parse_timestamp(text).timestamp()


def test_twenty_concurrent_creates_have_one_winner(store_url: str) -> None:
    stores = [open_store(store_url) for _ in range(20)]  # one client each
    results: list[bool] = [False] * 20

    def create(i: int) -> None:
        results[i] = stores[i].create("claim", f"thread {i}".encode())

    run_threads(20, create)
    assert results.count(True) == 1
    winner = results.index(True)
    assert stores[0].read_bytes("claim") == f"thread {winner}".encode()


def test_twenty_concurrent_replaces_of_one_token_have_one_winner(store_url: str) -> None:
    stores = [open_store(store_url) for _ in range(20)]
    stores[0].write_bytes("cas", b"start")
    current = stores[0].read_versioned("cas")
    assert current is not None
    results: list[bool] = [False] * 20

    def replace(i: int) -> None:
        results[i] = stores[i].replace("cas", f"thread {i}".encode(), current[1])

    run_threads(20, replace)
    assert results.count(True) == 1
    assert stores[0].read_bytes("cas") == f"thread {results.index(True)}".encode()


def assert_one_line_without(error: BaseException, secret: str) -> None:
    text = str(error)
    assert "\n" not in text and secret not in text


def test_missing_bucket(s3_env: SeaweedServer) -> None:
    store = open_store("s3://no-such-bucket-here/root")
    expected = "s3://no-such-bucket-here/root/k: bucket 'no-such-bucket-here' does not exist"
    for action in (
        lambda: store.read_bytes("k"),
        lambda: store.write_bytes("k", b"x"),
        lambda: store.exists("k"),  # a HEAD 404 alone cannot tell a missing bucket
    ):
        with pytest.raises(StorageError) as info:
            action()
        assert str(info.value) == expected
        assert not isinstance(info.value, OSError | NotFound)  # permanent: never retried
        assert_one_line_without(info.value, "test")


@pytest.mark.parametrize(("key_id", "code"), [("test", "SignatureDoesNotMatch"), ("ghost", "")])
def test_wrong_credentials_are_denied(
    s3_url: str, monkeypatch: pytest.MonkeyPatch, key_id: str, code: str
) -> None:
    secret = "Wr0ngSecretValue"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    store = open_store(s3_url)
    for action, named in (
        (lambda: store.write_bytes("k", b"x"), code),
        (lambda: store.exists("k"), "403"),
    ):
        with pytest.raises(StorageError, match="access denied") as info:
            action()
        assert str(info.value).startswith(f"{s3_url}/k: access denied (")
        assert "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in str(info.value)
        assert named in str(info.value)  # a HEAD answer has no body, so no error code
        assert not isinstance(info.value, OSError)
        assert_one_line_without(info.value, secret)


def test_unreachable_endpoint_fails_fast_as_transient(s3_env: SeaweedServer) -> None:
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    store = open_store("s3://some-bucket/root", endpoint_url=dead)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        store.write_bytes("k", b"x")
    assert time.monotonic() - started < 10
    assert str(info.value) == f"s3://some-bucket/root/k: cannot reach the S3 endpoint {dead}"
    assert isinstance(info.value, OSError)  # so the pipeline's tasks retry it


def client_error(code: str, status: int, message: str = "m") -> botocore.exceptions.ClientError:
    response = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {}}
    response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return botocore.exceptions.ClientError(response, "PutObject")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "kind", "text"),
    [
        (client_error("AccessDenied", 403), StorageError, "access denied (AccessDenied; check"),
        (client_error("InvalidAccessKeyId", 403), StorageError, "access denied (Invalid"),
        (client_error("NoSuchBucket", 404), StorageError, "bucket 'bucket' does not exist"),
        (client_error("NoSuchKey", 404), NotFound, "no such key"),
        (client_error("SlowDown", 503), StorageUnavailable, "unavailable (SlowDown)"),
        (client_error("InternalError", 500), StorageUnavailable, "unavailable (InternalError)"),
        (client_error("Weird", 400, "two\n lines"), StorageError, "S3 error Weird: two lines"),
        (botocore.exceptions.NoCredentialsError(), StorageError, "no S3 credentials"),
        (
            botocore.exceptions.ReadTimeoutError(endpoint_url="http://h:1/b/k"),
            StorageUnavailable,
            "lost the connection to the S3 endpoint http://h:1 (ReadTimeoutError)",
        ),
    ],
)
def test_error_mapping(error: Exception, kind: type[StorageError], text: str) -> None:
    mapped = map_error(error, URL, "http://h:1")
    assert type(mapped) is kind
    assert str(mapped).startswith(URL + ": ") and text in str(mapped)
    transient = kind is StorageUnavailable
    assert isinstance(mapped, OSError) == (transient or kind is NotFound)
    assert "\n" not in str(mapped)


def test_server_crash_is_transient_and_restart_keeps_objects(
    seaweed: SeaweedServer, s3_store: Store
) -> None:
    s3_store.write_bytes("before", b"kept")
    seaweed.kill()
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="cannot reach the S3 endpoint") as info:
            s3_store.write_bytes("after", b"new")
        assert isinstance(info.value, OSError)
        assert time.monotonic() - started < 10
    finally:
        seaweed.restart()
    s3_store.write_bytes("after", b"new")
    assert s3_store.read_bytes("before") == b"kept"
    assert s3_store.list() == ["after", "before"]


def test_an_objects_sha256_is_downloaded_once_per_version(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rescan of an unchanged S3 inbox asks with a HEAD; a rewrite of the key is seen."""
    import hashlib

    from mnistnn.core import locations
    from mnistnn.core.storage_s3 import S3Store

    url = locations.join(s3_url, "inbox/batch.csv")
    locations.write_bytes(url, b"first bytes")
    downloads: list[str] = []
    original = S3Store.read_into

    def counted(self: S3Store, key: str, write: Any) -> str:
        downloads.append(key)
        return original(self, key, write)

    monkeypatch.setattr(S3Store, "read_into", counted)
    first = hashlib.sha256(b"first bytes").hexdigest()
    assert locations.sha256_of(url) == first
    assert locations.sha256_of(url) == first
    assert downloads == ["batch.csv"]
    locations.write_bytes(url, b"other bytes")  # same key, new ETag
    assert locations.sha256_of(url) == hashlib.sha256(b"other bytes").hexdigest()
    assert len(downloads) == 2
    # a memo that is not a sha256 (a torn write, an edit) is not believed
    tag = open_store(s3_url).version("inbox/batch.csv")
    locations._sha256_memo(str(url), tag).write_text("garbage")
    assert locations.sha256_of(url) == hashlib.sha256(b"other bytes").hexdigest()
    assert len(downloads) == 3
    with pytest.raises(NotFound):
        locations.sha256_of(locations.join(s3_url, "inbox/missing.csv"))


def test_a_listing_read_from_its_xml_is_botocores_own(s3_store: Store) -> None:
    """The fast listing hook gives what botocore's parser gives (keys URL-decoded, ETags,
    sizes, times, pagination); a plain boto3 client, without the hook, is the reference."""
    import boto3

    from mnistnn.core.storage_s3 import S3Store

    assert isinstance(s3_store, S3Store)
    for name, data in [("a b.csv", b"1"), ("\u00fc+x%20.csv", b"22"), ("sub/c.csv", b"333")]:
        s3_store.write_bytes(name, data)
    plain = boto3.client("s3", config=botocore.config.Config(s3={"addressing_style": "path"}))
    pages: list[tuple[dict[str, object], dict[str, object]]] = []
    token: dict[str, str] = {}
    while True:
        asked = {"Bucket": s3_store.bucket, "Prefix": s3_store.prefix + "/", "MaxKeys": 2}
        fast = s3_store._client.list_objects_v2(**asked, **token)
        pages.append((fast, plain.list_objects_v2(**asked, **token)))
        if not fast["IsTruncated"]:
            break
        token = {"ContinuationToken": fast["NextContinuationToken"]}
    assert len(pages) == 2
    fields = ("Key", "ETag", "Size", "LastModified")  # what the store reads of an object
    for fast, reference in pages:
        for key in ("IsTruncated", "NextContinuationToken", "KeyCount"):
            assert fast.get(key) == reference.get(key), key
        expected = [{f: item[f] for f in fields} for item in reference["Contents"]]
        assert fast["Contents"] == expected
    assert set(s3_store.list_tags("")) == {"a b.csv", "\u00fc+x%20.csv", "sub/c.csv"}
    assert s3_store.list_info("")["sub/c.csv"][0] == 3


def test_botocores_200_error_check_reads_no_listing_again(
    s3_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`first_parse` runs the listing hook first: botocore's check for an error inside a 200
    answer then reads the small empty listing the hook leaves, not the page once more."""
    import botocore.handlers

    seen: list[tuple[int, bytes]] = []
    check = botocore.handlers._looks_like_special_case_error

    def spy(status_code: int, body: bytes) -> bool:
        seen.append((status_code, body))
        return check(status_code, body)

    monkeypatch.setattr(botocore.handlers, "_looks_like_special_case_error", spy)
    for index in range(30):
        s3_store.write_bytes(f"k{index:02d}.csv", b"x")
    seen.clear()
    assert len(s3_store.list_tags("")) == 30
    assert [len(body) for _, body in seen] == [len(s3_listing._EMPTY)]
    assert s3_store.list_after("", "k27.csv") == (["k28.csv", "k29.csv"], False)
    assert s3_store.list_after("", "k10.csv", limit=2) == (["k11.csv", "k12.csv"], True)
    assert s3_store.list_after("", "k29.csv") == ([], False)
