"""`mnistnn predict` and `mnistnn evaluate` from the command line, with a model registered here."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flows.cli.main import main
from mnistnn import NetworkConfig, NeuralNetwork
from mnistnn.registry.store import ModelRegistry

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, mnist_train) -> Path:
    """A data folder whose registry holds one champion trained for 1 epoch on 20,000 rows."""
    folder = tmp_path_factory.mktemp("data")
    network = NeuralNetwork(NetworkConfig())
    network.train_epoch(mnist_train[0][:20_000], mnist_train[1][:20_000])
    ModelRegistry(folder / "models").register(
        network, metrics={"accuracy": 0.9}, test_sha256="a" * 64, train_sha256="b" * 64
    )
    return folder


def digit_png(path: Path, pixels: np.ndarray, invert: bool = True) -> Path:
    """An MNIST digit as a person would draw it: dark ink on white, larger, off-centre."""
    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8).reshape(28, 28)).resize((140, 140))
    canvas = Image.new("L", (200, 180), 0)
    canvas.paste(image, (45, 10))
    if invert:
        canvas = Image.eval(canvas, lambda value: 255 - value)
    canvas.save(path)
    return path


def test_predict_images_and_show(data_dir: Path, mnist_test, tmp_path: Path, capsys) -> None:
    first = digit_png(tmp_path / "a.png", mnist_test[0][0])
    second = digit_png(tmp_path / "b.png", mnist_test[0][1])
    assert main(["--data-dir", str(data_dir), "predict", str(first), str(second)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{first}: {mnist_test[1][0]}  confidence ")
    assert "top 3: " in out[0]
    preview = tmp_path / "seen.png"
    assert main(["--data-dir", str(data_dir), "predict", str(first), "--show", str(preview)]) == 0
    with Image.open(preview) as shown:
        assert shown.size[0] > 28


def test_folder_mode_lists_bad_files_and_predicts_the_rest(
    data_dir: Path, mnist_test, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "digits"
    folder.mkdir()
    for index in range(3):
        digit_png(folder / f"{index}.png", mnist_test[0][index])
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    Image.new("L", (50, 50), 255).save(folder / "blank.png")
    status = main(["--data-dir", str(data_dir), "predict", str(folder)])
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.out.splitlines()
    assert lines[0] == "path,digit,confidence"
    assert len(lines) == 4
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2
    assert any("broken.png" in line for line in errors)
    assert any("blank.png" in line and "no ink" in line for line in errors)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"plain text, not an image", "not an image"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "png"),
    ],
)
def test_single_bad_file_is_one_line_and_exit_1(
    data_dir: Path, tmp_path: Path, capsys, content: bytes, message: str
) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    assert main(["--data-dir", str(data_dir), "predict", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("mnistnn: error: ")
    assert "bad.png" in err
    assert message in err.lower()


def test_missing_image_and_decompression_bomb(
    data_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    assert main(["--data-dir", str(data_dir), "predict", str(tmp_path / "nope.png")]) == 1
    assert "nope.png" in capsys.readouterr().err
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    big = tmp_path / "big.png"
    Image.new("L", (40, 40), 0).save(big)
    assert main(["--data-dir", str(data_dir), "predict", str(big)]) == 1
    err = capsys.readouterr().err
    assert "big.png" in err
    assert "decompression" in err.lower() or "too large" in err.lower() or "pixels" in err.lower()


def test_predict_csv_kaggle_layout(data_dir: Path, mnist_test, tmp_path: Path, capsys) -> None:
    source = tmp_path / "test.csv"
    header = ",".join(f"pixel{i}" for i in range(784))
    rows = "\n".join(",".join(map(str, row)) for row in mnist_test[0][:20])
    source.write_text(header + "\n" + rows + "\n")
    out = tmp_path / "submission.csv"
    assert (
        main(["--data-dir", str(data_dir), "predict", "--csv", str(source), "--out", str(out)]) == 0
    )
    lines = out.read_text().splitlines()
    assert lines[0] == "ImageId,Label"
    assert len(lines) == 21
    predicted = np.array([int(line.split(",")[1]) for line in lines[1:]])
    assert np.mean(predicted == mnist_test[1][:20]) >= 0.8


def test_one_image_answers_quickly_from_a_fresh_process(
    data_dir: Path, mnist_test, tmp_path: Path
) -> None:
    """Start-up included; generous bound for a loaded CI machine (measured ~1 s here)."""
    image = digit_png(tmp_path / "x.png", mnist_test[0][3])
    started = time.perf_counter()
    result = subprocess.run(
        [str(BIN / "mnistnn"), "--data-dir", str(data_dir), "predict", str(image)],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    assert result.stdout.startswith(f"{image}: {mnist_test[1][3]}")
    print(f"predict one image from a fresh process: {seconds:.2f} s")


def test_models_list_names_the_champion_in_words(
    data_dir: Path, mnist_train, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = ModelRegistry(data_dir / "models")
    worse = NeuralNetwork(NetworkConfig(hidden_nodes=5))
    registry.register(worse, metrics={"accuracy": 0.1}, test_sha256="a" * 64, train_sha256="b" * 64)
    assert main(["--data-dir", str(data_dir), "models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    champion = [line for line in lines if "champion" in line]
    assert len(champion) == 1 and champion[0].startswith("* v0001  champion")
    assert any(line.startswith("  v0002  challenger") for line in lines)
