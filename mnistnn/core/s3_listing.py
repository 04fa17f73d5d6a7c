"""A listing's objects read straight from its XML, and timestamps read without dateutil.

botocore parses each `<Contents>` of a ListObjectsV2 answer through its generic, model-driven
parser: at 1,000 objects that was most of a rescan of an `s3://` inbox on SeaweedFS (dateutil
for each LastModified, then the walk of the model). `fast_listing`, a `before-parse` hook, reads
a 200 answer's objects with ElementTree (the fields the store reads: Key, ETag, Size,
LastModified), hands them to botocore as its customized response, and leaves botocore an empty
listing to parse; anything else (an error, XML it cannot read) is left
to botocore as before. Keys still pass through botocore's URL decoding (`EncodingType`).

`first_parse` runs the hook before botocore's own check for an error inside a 200 answer,
which parses the whole body once more only to read its root tag (5 ms of a 1,000-object page
here): the hook has read that root already, and leaves the check an empty listing.
"""

from __future__ import annotations

import datetime
from typing import Any
from xml.etree import ElementTree

import botocore.handlers
import botocore.utils

_EMPTY = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></ListBucketResult>'
)


def timestamp(text: str) -> datetime.datetime:
    """A response's timestamp: ISO 8601 directly, anything else as botocore parses it."""
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return botocore.utils.parse_timestamp(text)  # type: ignore[no-any-return]
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)


def first_parse(session: Any, hook: Any) -> None:
    """Register `hook` on every S3 answer of `session` (a botocore session), before botocore's
    check for an error in a 200 answer (botocore calls the handlers of `before-parse.s3.*`
    before those of a named operation, so the hook sits beside the check, ahead of it)."""
    event, check = "before-parse.s3.*", getattr(botocore.handlers, "_handle_200_error", None)
    emitter = session.get_component("event_emitter")
    if check is not None:  # a botocore without it (a private name) has nothing to move
        session.unregister(event, check)
    emitter.register_first(event, hook)
    if check is not None:
        emitter.register_first(event, check)


def fast_listing(
    response_dict: dict[str, Any],
    customized_response_dict: dict[str, Any],
    operation_model: Any = None,
    **_: Any,
) -> None:
    """botocore's `before-parse.s3.*` hook for ListObjectsV2 (see the module's docstring)."""
    if getattr(operation_model, "name", "ListObjectsV2") != "ListObjectsV2":
        return
    if response_dict.get("status_code") != 200 or not isinstance(response_dict.get("body"), bytes):
        return
    try:
        root = ElementTree.fromstring(response_dict["body"])
    except ElementTree.ParseError:
        return
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    if root.tag != f"{ns}ListBucketResult":
        return
    contents = []
    for item in root.iter(f"{ns}Contents"):
        key, etag = item.findtext(f"{ns}Key"), item.findtext(f"{ns}ETag")
        modified, size = item.findtext(f"{ns}LastModified"), item.findtext(f"{ns}Size")
        if key is None or etag is None or modified is None or size is None:
            return  # not the listing expected: botocore's parser decides
        contents.append(
            {"Key": key, "ETag": etag, "Size": int(size), "LastModified": timestamp(modified)}
        )
    found: dict[str, Any] = {"Contents": contents} if contents else {}
    found["IsTruncated"] = root.findtext(f"{ns}IsTruncated", "false").strip() == "true"
    for name in ("NextContinuationToken", "EncodingType", "KeyCount"):
        value = root.findtext(f"{ns}{name}")
        if value is not None:
            found[name] = int(value) if name == "KeyCount" else value
    customized_response_dict.update(found)
    response_dict["body"] = _EMPTY


__all__ = ["fast_listing", "first_parse", "timestamp"]
