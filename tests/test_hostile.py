"""Hostile inputs against ingest, predict, watch, score and label import: each in bounded time and
memory (measured in a child process), refused in one line, the other inputs processed, nothing
from outside the data folder copied in. The corpus is built on the fly (`tests/hostile.py`)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mnistnn.config import DataPaths, NetworkConfig
from mnistnn.data.inbox import scan_inbox
from mnistnn.data.ingest import ingest_csv
from mnistnn.errors import DataError
from mnistnn.inert import cell, shown
from mnistnn.limits import LIMITS, LimitExceeded
from mnistnn.model.network import NeuralNetwork
from mnistnn.predict.image import load_image
from mnistnn.predict.inputs import InputRefused, discover
from mnistnn.predict.predict import predict_csv
from mnistnn.predict.review import import_reviewed
from tests.hostile import (
    FORGED_ANSI,
    FORGED_NEWLINE,
    FORMULA,
    PIXEL_ROW,
    ROW,
    SECRET,
    SMALL_LIMITS,
    digit_png,
    float_tiff,
    gzip_members,
    labelled_csv,
    newline_free,
    pixel_csv,
    poison_png,
    rows_bomb,
    run_child,
    secret_outside,
    wide_png,
    zero_bomb,
)
from tests.predict.scoring_fixtures import HEADER, register, trained

#: Every hostile run must stay under these (the baseline of a Python with numpy and pyarrow is
#: ~150 MB; before the limits, the same files took 4-10 GB and minutes).
PEAK_MB = 600
SECONDS = 60


def _no_secret_in(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert SECRET.encode() not in path.read_bytes(), f"{path} holds the outside secret"


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("mnistnn: error:")]


@pytest.fixture(scope="module")
def champion_data(tmp_path_factory, mnist_train) -> Path:
    """A data folder with a small champion (trained on 1,000 rows)."""
    root = tmp_path_factory.mktemp("hostile") / "data"
    network = trained(mnist_train[0][:1000], mnist_train[1][:1000], hidden=16)
    register(root / "models", network, 0.9)
    return root


# -- ingest (the library CLI, no Prefect) ----------------------------------------------------
def test_ingest_refuses_each_hostile_file_and_ingests_the_good_one(tmp_path, mnist_train) -> None:
    good = labelled_csv(tmp_path / "good.csv", mnist_train[0][:20], mnist_train[1][:20])
    (tmp_path / "zeros.csv.gz").write_bytes(zero_bomb())
    (tmp_path / "rows.csv.gz").write_bytes(rows_bomb())
    (tmp_path / "noline.csv.gz").write_bytes(newline_free())
    os.mkfifo(tmp_path / "pipe.csv")
    forged = labelled_csv(tmp_path / FORGED_NEWLINE, mnist_train[0][:5], mnist_train[1][:5])
    names = ["zeros.csv.gz", "rows.csv.gz", "noline.csv.gz", "pipe.csv"]
    data = tmp_path / "data"
    ran = run_child(
        [
            *("-m", "mnistnn.cli", "--data-dir", str(data), "ingest", str(good)),
            *(str(tmp_path / name) for name in names),
            str(forged),
        ],
        SMALL_LIMITS,
    )
    ran.assert_inert()
    assert ran.code == 2, ran.err
    assert "good.csv: 20 rows read, 20 accepted" in ran.out
    assert "fake.csv\\nrefused other.csv: injected.csv: 5 rows read" in ran.out  # escaped, one line
    assert not any(line.startswith("refused other.csv") for line in ran.out.splitlines())
    errors = _errors(ran.err)
    assert len(errors) == 4, ran.err
    assert "zeros.csv.gz: binary data, not CSV text (NUL byte near line 1)" in errors[0]
    assert "over the max_rows limit (1,000 rows); set MNISTNN_MAX_ROWS" in errors[1]
    assert "line 1 is longer than 65,536 bytes" in errors[2]
    assert "MNISTNN_MAX_LINE_BYTES" in errors[2]
    assert "pipe.csv: a named pipe (FIFO), not a regular file; refused" in errors[3]
    assert ran.seconds < SECONDS and ran.peak_mb < PEAK_MB, (ran.seconds, ran.peak_mb)


def test_default_limits_hold_the_mnist_files(tmp_path) -> None:
    """The real files under the default limits, and what that costs at peak."""
    raw = Path(__file__).resolve().parents[1] / "data" / "raw"
    ran = run_child(
        [
            *("-m", "mnistnn.cli", "--data-dir", str(tmp_path), "ingest"),
            *(str(raw / f"mnist_{part}.csv.gz") for part in ("train", "test")),
        ]
    )
    ran.assert_inert()
    assert ran.code == 0, ran.err
    assert "60000 rows read, 60000 accepted, 0 rejected" in ran.out
    assert "10000 rows read, 10000 accepted, 0 rejected" in ran.out
    print(f"default limits, MNIST train + test: {ran.seconds:.1f} s, peak RSS {ran.peak_mb:.0f} MB")
    assert ran.peak_mb < PEAK_MB


def test_decoded_bytes_limit_stops_valid_rows_as_they_inflate(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MNISTNN_MAX_DECODED_BYTES", "1000000")
    (tmp_path / "big.csv.gz").write_bytes(rows_bomb())
    with pytest.raises(LimitExceeded, match=r"over the max_decoded_bytes limit \(1,000,000 bytes"):
        ingest_csv(tmp_path / "big.csv.gz", tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.parquet"))


def test_a_bad_limit_setting_is_one_line(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MNISTNN_MAX_ROWS", "many")
    (tmp_path / "a.csv").write_bytes(ROW)
    with pytest.raises(ValueError, match="MNISTNN_MAX_ROWS must be an integer >= 1"):
        ingest_csv(tmp_path / "a.csv", tmp_path / "out")


def test_every_limit_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for limit in LIMITS:
        assert f"`{limit.env}`" in readme and f"{limit.default:,}" in readme, limit.env


# -- predict (the library CLI) ---------------------------------------------------------------
def test_predict_fails_each_hostile_image_alone(tmp_path, champion_data, mnist_test) -> None:
    images = [
        poison_png(tmp_path / "poison.png"),
        wide_png(tmp_path / "wide.png"),
        float_tiff(tmp_path / "inf.tif", float("inf")),
        float_tiff(tmp_path / "nan.tif", float("nan")),
        digit_png(tmp_path / f"{FORGED_ANSI}.png", mnist_test[0][0]),
        digit_png(tmp_path / "good.png", mnist_test[0][1]),
    ]
    os.mkfifo(tmp_path / "pipe.png")
    images.append(tmp_path / "pipe.png")
    ran = run_child(
        [*("-m", "mnistnn.cli", "--data-dir", str(champion_data), "predict"), *map(str, images)]
    )
    ran.assert_inert()
    assert ran.code == 2, ran.err
    assert "good.png: " in ran.out and "\\x1b[31mred\\x1b[0m.csv.png: " in ran.out
    errors = _errors(ran.err)
    assert len(errors) == 5, ran.err
    assert "poison.png: 80000000x1 pixels: over the max_image_pixels limit" in errors[0]
    assert "wide.png: 9000x9000 pixels: over the max_image_pixels limit" in errors[1]
    for error in errors[2:4]:
        assert "pixel values that are not finite numbers (NaN or inf)" in error
    assert "pipe.png: a named pipe (FIFO), not a regular file; refused" in errors[4]
    assert ran.seconds < SECONDS and ran.peak_mb < PEAK_MB, (ran.seconds, ran.peak_mb)


#: In a child: warm up, then `predict_csv` on argv[1]; prints the growth of its peak RSS (MB).
_PREDICT_CSV_GROWTH = """
import sys
from mnistnn.config import NetworkConfig
from mnistnn.model.network import NeuralNetwork
from mnistnn.predict.predict import predict_csv

def peak():
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024

network = NeuralNetwork(NetworkConfig(hidden_nodes=16))
predict_csv(network, sys.argv[2])  # numba, pyarrow and the allocator warmed up
before = peak()
digits = predict_csv(network, sys.argv[1], sys.argv[3])
print(len(digits), peak() - before)
"""


def test_predict_csv_streams_in_bounded_memory_within_the_limits(tmp_path, monkeypatch) -> None:
    """30,000 rows (47 MB of text): the whole-file parse grew the peak by ~170 MB (5.6 MB per
    1,000 rows, so a 1,000,000-row file cost gigabytes); streamed, one block costs ~40 MB."""
    many = tmp_path / "many.csv.gz"
    many.write_bytes(gzip_members(PIXEL_ROW * 1000, 30))
    (tmp_path / "few.csv").write_bytes(PIXEL_ROW * 10)
    out = tmp_path / "submission.csv"
    ran = run_child(["-c", _PREDICT_CSV_GROWTH, str(many), str(tmp_path / "few.csv"), str(out)])
    ran.assert_inert()
    assert ran.code == 0, ran.err
    rows, growth = ran.out.split()
    assert int(rows) == 30_000 and out.read_text().count("\n") == 30_001
    assert float(growth) < 100, f"predict_csv grew the peak by {float(growth):.0f} MB"
    # the same limits as score, checked as it reads: refused at row 1,001, nothing written
    monkeypatch.setenv("MNISTNN_MAX_ROWS", "1000")
    (tmp_path / "rows.csv.gz").write_bytes(rows_bomb(PIXEL_ROW))
    (tmp_path / "noline.csv.gz").write_bytes(newline_free())
    network = NeuralNetwork(NetworkConfig(hidden_nodes=4))
    with pytest.raises(DataError, match=r"rows.csv.gz: more than 1,000 rows: over the max_rows"):
        predict_csv(network, tmp_path / "rows.csv.gz", tmp_path / "o.csv")
    with pytest.raises(DataError, match=r"noline.csv.gz: line 1 is longer than 65,536 bytes"):
        predict_csv(network, tmp_path / "noline.csv.gz", tmp_path / "o.csv")
    assert not (tmp_path / "o.csv").exists()


def test_image_bytes_limit_binds_before_decoding(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MNISTNN_MAX_IMAGE_PIXELS", "100000000")
    with pytest.raises(LimitExceeded, match=r"9000x9000 RGBA = 324,000,000 bytes decoded: over"):
        load_image(wide_png(tmp_path / "wide.png"))


def test_image_decoding_stops_at_the_time_limit(tmp_path, monkeypatch) -> None:
    """The clock is checked at each block Pillow reads: a decode still going after
    max_image_seconds is refused in one line (the clock moves 20 s a read here)."""
    from mnistnn import limits

    noise = np.random.default_rng(0).integers(0, 256, (400, 400), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "slow.png")  # ~160 KB: three 64 KB reads or more
    assert load_image(tmp_path / "slow.png").shape == (400, 400)
    ticks = iter(range(0, 10_000, 20))
    monkeypatch.setattr(limits, "_clock", lambda: float(next(ticks)))
    with pytest.raises(LimitExceeded, match=r"slow.png: still decoding after 30 seconds: over th"):
        load_image(tmp_path / "slow.png")


def test_float_tiff_with_inf_or_nan_is_refused(tmp_path) -> None:
    for value in (float("inf"), float("-inf"), float("nan")):
        with pytest.raises(DataError, match="not finite numbers"):
            load_image(float_tiff(tmp_path / "x.tif", value))


# -- watch (the labelled inbox, through the Prefect CLI offline) -----------------------------
def test_watch_refuses_hostile_batches_and_accepts_the_good_one(tmp_path, mnist_train) -> None:
    data = tmp_path / "data"
    incoming = data / "incoming"
    incoming.mkdir(parents=True)
    labelled_csv(incoming / "good.csv", mnist_train[0][:50], mnist_train[1][:50])
    (incoming / "zeros.csv.gz").write_bytes(zero_bomb())
    (incoming / "rows.csv.gz").write_bytes(rows_bomb())
    (incoming / "noline.csv.gz").write_bytes(newline_free())
    (incoming / "secret.csv").symlink_to(secret_outside(tmp_path))
    os.mkfifo(incoming / "pipe.csv")
    (incoming / FORGED_NEWLINE).write_bytes(b"12" + ROW[1:])  # label 12: refused, named
    (incoming / FORGED_ANSI).write_bytes(ROW * 3)
    ran = run_child(
        [
            *("-m", "flows.cli", "--data-dir", str(data), "watch", "--once"),
            *("--settle-seconds", "0", "--train-csv", str(incoming / "good.csv")),
        ],
        {**SMALL_LIMITS, "PREFECT_HOME": str(tmp_path / "prefect-home")},
    )
    ran.assert_inert()
    assert ran.code == 2, ran.err  # partial failure: batches refused, the good ones ingested
    lines = ran.out.splitlines()
    assert any(line.startswith("accepted good.csv: 50 rows") for line in lines), ran.out
    assert any(line.startswith("accepted \\x1b[31mred\\x1b[0m.csv: 3 rows") for line in lines)
    assert not any(line.startswith("refused other.csv") for line in lines)
    refused = {line.split(":")[0] for line in lines if line.startswith("refused ")}
    assert refused == {
        "refused zeros.csv.gz",
        "refused rows.csv.gz",
        "refused noline.csv.gz",
        "refused fake.csv\\nrefused other.csv",
    }, ran.out
    assert "max_rows" in ran.out and "max_line_bytes" in ran.out
    assert "secret.csv: a symbolic link" in ran.err and "pipe.csv: a named pipe" in ran.err
    ledger = json.loads((data / "snapshots" / "inbox.json").read_text())
    assert "secret.csv" not in ledger["names"] and FORGED_NEWLINE in ledger["names"]
    _no_secret_in(data)
    assert ran.seconds < SECONDS and ran.peak_mb < PEAK_MB, (ran.seconds, ran.peak_mb)


def test_watch_once_exits_2_for_the_pass_that_refused_a_batch(tmp_path, mnist_train) -> None:
    from flows.cli.inbox import exit_status
    from flows.watch import scan

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    good = labelled_csv(incoming / "good.csv", mnist_train[0][:20], mnist_train[1][:20])
    (incoming / "bad.csv").write_bytes(b"12" + ROW[1:])
    paths = DataPaths.at(tmp_path / "data")
    first = scan(incoming, paths, train_csv=good, settle_seconds=0)
    assert {batch["file"]: batch["status"] for batch in first.new} == {
        "good.csv": "accepted",
        "bad.csv": "refused",
    }
    assert exit_status(first) == 2
    again = scan(incoming, paths, train_csv=good, settle_seconds=0)
    assert again.new == [] and exit_status(again) == 0  # refused once, not read again
    accepted = dataclasses.replace(first, new=[b for b in first.new if b["file"] == "good.csv"])
    assert exit_status(accepted) == 0


# -- score (the scoring inbox, the Prefect flow in a child) ----------------------------------
def test_score_refuses_hostile_inputs_and_scores_the_rest(
    tmp_path, champion_data, mnist_test, prefect_harness
) -> None:
    from prefect.settings import get_current_settings

    api = str(get_current_settings().api.url)  # the session's server: no start-up in the child
    data = tmp_path / "data"
    shutil.copytree(champion_data / "models", data / "models")
    inbox = data / "unlabelled"
    inbox.mkdir(parents=True)
    pixel_csv(inbox / "good.csv", mnist_test[0][:40])
    pixel_csv(inbox / FORMULA, mnist_test[0][:10], extra="1,2,3\n")  # one bad row: a failure
    (inbox / "utf16.csv").write_bytes((HEADER + "\n" + PIXEL_ROW.decode() * 3).encode("utf-16"))
    (inbox / "noline.csv.gz").write_bytes(newline_free())
    (inbox / "rows.csv.gz").write_bytes(rows_bomb(PIXEL_ROW))
    poison_png(inbox / "poison.png")
    digit_png(inbox / "digit.png", mnist_test[0][0])
    os.mkfifo(inbox / "pipe.csv")
    (inbox / "secret.csv").symlink_to(secret_outside(tmp_path))
    (inbox / "half.csv.part").write_bytes(PIXEL_ROW)
    ran = run_child(
        [
            *("-m", "flows.cli", "--data-dir", str(data), "score"),
            *("--threshold", "1.0", "--challenger", "none"),
        ],
        {**SMALL_LIMITS, "PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "home")},
    )
    ran.assert_inert()
    assert ran.code == 2, ran.err
    assert "good.csv: scored: 40 rows, 40 scored" in ran.out
    assert f"{FORMULA}: scored: 11 rows, 10 scored, 1 failed" in ran.out
    assert ".: scored: 2 rows, 1 scored, 1 failed" in ran.out  # the loose images
    errors = _errors(ran.err)
    assert len(errors) == 3, ran.err
    assert "noline.csv.gz: line 1 is longer than 65,536 bytes" in errors[0]
    assert "rows.csv.gz: more than 1,000 rows: over the max_rows limit" in errors[1]
    assert "utf16.csv: UTF-16 text; save it as UTF-8" in errors[2]
    assert "secret.csv" not in ran.out and "half.csv.part" not in ran.out
    # spreadsheet files neutralise the name; Parquet keeps it exactly
    review = next((data / "review").glob("*.csv"), None)
    reviews = [path.read_text() for path in (data / "review").glob("*.csv")]
    assert review is not None and any(f"'{FORMULA}".replace('"', '""') in t for t in reviews)
    assert not any(re.search(r'(^|,)"?=HYPERLINK', t, re.MULTILINE) for t in reviews)
    failures = "".join(p.read_text() for p in (data / "predictions").glob("*.failures.csv"))
    assert "'=HYPERLINK" in failures and not re.search(r'(^|,)"?=HYPERLINK', failures, re.M)
    sources = set()
    for path in (data / "predictions").glob("*.parquet"):
        sources |= set(pq.read_table(path, columns=["source"]).column("source").to_pylist())
    assert FORMULA in sources
    assert len(list((data / "predictions").glob("*.refused.json"))) == 3
    _no_secret_in(data)
    assert ran.seconds < 2 * SECONDS and ran.peak_mb < PEAK_MB, (ran.seconds, ran.peak_mb)


def test_scoring_inbox_waits_for_a_file_to_settle(tmp_path) -> None:
    pixel_csv(tmp_path / "digits.csv", np.zeros((2, 784), dtype=np.uint8))
    (tmp_path / "more.csv.tmp").write_bytes(PIXEL_ROW)
    written = (tmp_path / "digits.csv").stat().st_mtime
    assert discover(tmp_path, settle_seconds=5, now=written + 1).inputs == ()
    found = discover(tmp_path, settle_seconds=5, now=written + 6)
    assert [item.name for item in found.inputs] == ["digits.csv"]


# -- label import ----------------------------------------------------------------------------
def _review_file(path: Path, header: list[str], label: str = "7") -> Path:
    row = ["x.csv", "1", "why", "3", "0.5", "", label, *(["0"] * 784)]
    path.write_text(",".join(header) + "\n" + ",".join(row) + "\n")
    return path


REVIEW_HEADER = ["source", "row", "reason", "predicted", "confidence", "challenger", "label"] + [
    f"pixel{i}" for i in range(784)
]


def test_label_import_writes_over_a_dangling_link_at_its_name(tmp_path) -> None:
    review = _review_file(tmp_path / "review.csv", REVIEW_HEADER)
    incoming = tmp_path / "incoming"
    first = import_reviewed(review, incoming)
    assert first.output is not None and not first.already_imported
    target = Path(first.output)
    target.unlink()
    target.symlink_to(tmp_path / "nowhere.csv")  # dangling: the labels would be lost
    again = import_reviewed(review, incoming)
    assert not again.already_imported and not target.is_symlink()
    assert target.read_text().startswith("7,0,0")


def test_review_file_with_two_label_columns_is_refused(tmp_path) -> None:
    header = [*REVIEW_HEADER[:7], "label", *REVIEW_HEADER[7:]]
    review = tmp_path / "two.csv"
    review.write_text(",".join(header) + "\n")
    with pytest.raises(DataError, match="two.csv: column label appears more than once"):
        import_reviewed(review, tmp_path / "incoming")


def test_label_import_of_hostile_files_is_bounded(tmp_path) -> None:
    (tmp_path / "noline.csv").write_bytes(b"1" * (8 << 20))
    command = ["-m", "mnistnn.cli", "--data-dir", str(tmp_path), "label", "import"]
    ran = run_child([*command, str(tmp_path / "noline.csv")])
    ran.assert_inert()
    assert ran.code == 1 and "line 1 is longer than 65,536 bytes" in ran.err, ran.err
    assert ran.seconds < SECONDS and ran.peak_mb < PEAK_MB
    os.mkfifo(tmp_path / "pipe.csv")
    signal.alarm(30)  # a blocking open would hang here: fail instead
    try:
        with pytest.raises(DataError, match="pipe.csv: a named pipe .FIFO., not a regular file"):
            import_reviewed(tmp_path / "pipe.csv", tmp_path / "incoming")
    finally:
        signal.alarm(0)
    assert not (tmp_path / "incoming").exists()


# -- unit: names and cells -------------------------------------------------------------------
def test_names_are_shown_inert_and_cells_cannot_be_formulas() -> None:
    assert shown("a.csv") == "a.csv"
    assert shown(FORGED_NEWLINE) == "fake.csv\\nrefused other.csv: injected.csv"
    assert shown("\x1b[2Jx\u202e.csv") == "\\x1b[2Jx\\x202e.csv"
    assert shown("a\\b\n") == "a\\\\b\\n"  # a backslash cannot fake an escape
    for value in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"):
        assert cell(value) == "'" + value
    assert cell("digits.csv") == "digits.csv"


def test_utf16_csv_is_one_refusal_in_score(tmp_path) -> None:
    from mnistnn.predict.readers import read_chunks

    (tmp_path / "u.csv").write_bytes((PIXEL_ROW.decode() * 3).encode("utf-16-le"))  # no BOM
    (item,) = discover(tmp_path, settle_seconds=0).inputs
    with pytest.raises(InputRefused, match="u.csv: UTF-16 text"):
        list(read_chunks(item))


# -- S3: a bomb object and a forged name in a bucket inbox -----------------------------------
def test_watch_on_s3_refuses_a_bomb_object_and_escapes_names(
    s3_url, mnist_train, monkeypatch
) -> None:
    from mnistnn.core import locations

    monkeypatch.setenv("MNISTNN_MAX_ROWS", "1000")
    incoming = f"{s3_url}/incoming"
    good = labelled_csv_bytes(mnist_train[0][:20], mnist_train[1][:20])
    locations.write_bytes(f"{incoming}/good.csv", good)
    locations.write_bytes(f"{incoming}/bomb.csv.gz", rows_bomb())
    locations.write_bytes(f"{incoming}/zeros.csv.gz", zero_bomb())
    locations.write_bytes(f"{incoming}/{FORMULA}", b"12" + ROW[1:])
    batches = scan_inbox(incoming, DataPaths.at(f"{s3_url}/data"))
    status = {batch.file: (batch.status, batch.reason or "") for batch in batches}
    assert status["good.csv"][0] == "accepted"
    assert "over the max_rows limit" in status["bomb.csv.gz"][1]
    assert "binary data" in status["zeros.csv.gz"][1]
    assert status[FORMULA][0] == "refused" and "label 12" in status[FORMULA][1]
    assert not any("mnistnn-cache" in reason for _, reason in status.values()), status


#: In a child: warm up on a small object (argv[1], hashed, and its folder scanned), then hash
#: argv[2] (an `s3://` URL) and scan its inbox (hashed, then ingested: each object streamed);
#: prints the sha256, the growth of the peak RSS (MB) and each batch's status and reason.
_DOWNLOAD_GROWTH = """
import json, sys
from mnistnn.config import DataPaths
from mnistnn.core import locations
from mnistnn.data.inbox import scan_inbox

def peak():
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024

locations.sha256_of(sys.argv[1])  # boto3's client and connections, the allocator warmed up
scan_inbox(sys.argv[1].rpartition("/")[0], DataPaths.at(sys.argv[3] + "-warm"))  # its imports
before = peak()
digest = locations.sha256_of(sys.argv[2])  # streamed into the cache, hashed on the way
batches = scan_inbox(sys.argv[2].rpartition("/")[0], DataPaths.at(sys.argv[3]))
print(digest, peak() - before)
print(json.dumps({batch.file: [batch.status, batch.reason] for batch in batches}))
"""


def test_s3_objects_are_streamed_in_bounded_memory(s3_url, tmp_path) -> None:
    """A 32 MB object in an S3 inbox is hashed and ingested with one chunk of memory (~1 MB):
    it used to be read whole (32 MB or more per read) before the limits could say anything."""
    import hashlib

    from mnistnn.core import locations

    body = np.random.default_rng(0).bytes(32 << 20)  # binary: refused once downloaded
    big, small = f"{s3_url}/incoming/big.csv", f"{s3_url}/incoming/small.csv"
    locations.write_bytes(big, body)
    locations.write_bytes(small, ROW)
    locations.write_bytes(f"{s3_url}/warm/small.csv", ROW)
    ran = run_child(
        ["-c", _DOWNLOAD_GROWTH, f"{s3_url}/warm/small.csv", big, str(tmp_path / "data")],
        {"TMPDIR": str(tmp_path)},  # the download cache goes with the test
    )
    ran.assert_inert()
    assert ran.code == 0, ran.err
    measured, batches = ran.out.splitlines()
    digest, growth = measured.split()
    assert digest == hashlib.sha256(body).hexdigest()
    status = json.loads(batches)
    assert status["small.csv"] == ["accepted", None], status
    assert status["big.csv"][0] == "refused" and "big.csv: binary data" in status["big.csv"][1]
    assert float(growth) < 16, f"a 32 MB object grew the peak by {float(growth):.0f} MB"


def labelled_csv_bytes(pixels: np.ndarray, labels: np.ndarray) -> bytes:
    lines = [
        f"{label}," + ",".join(map(str, row)) for row, label in zip(pixels, labels, strict=True)
    ]
    return ("\n".join(lines) + "\n").encode()


def test_a_refused_input_is_not_read_again_until_its_bytes_change(tmp_path, monkeypatch) -> None:
    from mnistnn.config import NetworkConfig
    from mnistnn.core.files import sha256_file
    from mnistnn.model.network import NeuralNetwork
    from mnistnn.predict import batch, readers

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "u.csv").write_bytes((HEADER + "\n").encode("utf-16"))
    (item,) = discover(inbox, settle_seconds=0).inputs
    model = batch.PinnedModel("v0001", NeuralNetwork(NetworkConfig(hidden_nodes=5)))
    out = {"predictions_dir": tmp_path / "p", "review_dir": tmp_path / "r"}
    with pytest.raises(InputRefused, match="u.csv: UTF-16 text"):
        batch.score_input(item, sha256_file(item.path), model, None, **out)
    monkeypatch.setattr(readers, "csv_chunks", lambda *a: pytest.fail("read again"))
    with pytest.raises(InputRefused, match="UTF-16 text; .* \\(refused before; not read again"):
        batch.score_input(item, sha256_file(item.path), model, None, **out)
    monkeypatch.setenv("MNISTNN_MAX_ROWS", "5")  # other limits: read again
    with pytest.raises(pytest.fail.Exception, match="read again"):
        batch.score_input(item, sha256_file(item.path), model, None, **out)


def test_zero_padding_after_gzip_costs_no_memory_and_garbage_is_refused() -> None:
    import gzip as gz
    import io

    from mnistnn.data import text
    from mnistnn.limits import Budget

    member = gz.compress(b"1,2\n")
    padded = b"".join(text.decoded_chunks("f", io.BytesIO(member + bytes(8 << 20)), Budget("f")))
    assert padded == b"1,2\n"
    with pytest.raises(DataError, match="f: corrupt gzip file"):
        list(text.decoded_chunks("f", io.BytesIO(member + bytes(2 << 20) + b"x"), Budget("f")))
