"""Accuracy per epoch against elapsed training time for a preset, on the full bundled data.

Not a CI test (the best preset trains for minutes): it prints the curve the closing notes quote.
`python -m benchmarks.bench_accuracy [--preset best] [--epochs N] [--quick] [--set key=value ...]`
"""

from __future__ import annotations

import json
import time

from benchmarks.common import QUICK_ROWS, TEST_CSV, TRAIN_CSV, machine, parser
from mnistnn import NeuralNetwork
from mnistnn.data.fast_csv import read_csv
from mnistnn.model.metrics import accuracy, confident_score
from mnistnn.presets import resolve


def main() -> None:
    arguments = parser(__doc__ or "")
    arguments.add_argument("--preset", default="best")
    arguments.add_argument("--epochs", type=int, default=None)
    arguments.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = arguments.parse_args()
    overrides: dict[str, object] = {"epochs": args.epochs}
    for item in args.set:
        key, value = item.split("=", 1)
        overrides[key] = json.loads(value) if value[:1] in "0123456789-[{tf" else value
    resolved = resolve(args.preset, overrides)
    config, epochs = resolved.config, resolved.epochs
    pixels, labels = read_csv(TRAIN_CSV)
    test_pixels, test_labels = read_csv(TEST_CSV)
    if args.quick:
        pixels, labels, epochs = pixels[:QUICK_ROWS], labels[:QUICK_ROWS], min(epochs, 1)
    print(f"{args.preset}: {json.dumps(config.to_dict())}  [{machine()}]")
    network = NeuralNetwork(config)
    elapsed = 0.0
    print(f"{'epoch':>5}  {'accuracy':>8}  {'confident':>9}  {'epoch s':>7}  {'elapsed s':>9}")
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        network.train_epoch(pixels, labels)
        seconds = time.perf_counter() - started
        elapsed += seconds
        outputs = network.query(test_pixels)
        print(
            f"{epoch:>5}  {accuracy(outputs, test_labels):>8.4f}  "
            f"{confident_score(outputs, test_labels):>9.4f}  {seconds:>7.2f}  {elapsed:>9.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
