"""The promotion gate: McNemar's exact test, the policies, the guardrails and their simulation."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.sim_class_guardrail import simulate
from mnistnn.errors import ConfigError
from mnistnn.registry.evidence import Evidence, binomial_tail, compare_predictions, mcnemar_p
from mnistnn.registry.policy import PromotionPolicy, every_policy, first_model, judge


def test_mcnemar_exact_values() -> None:
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(0, 5) == pytest.approx(2 / 32)  # 5 to 0: both tails of 1/32
    assert mcnemar_p(5, 0) == mcnemar_p(0, 5)
    assert mcnemar_p(10, 10) == 1.0
    assert binomial_tail(0, 4) == 1.0 and binomial_tail(5, 4) == 0.0
    assert binomial_tail(3, 4) == pytest.approx(5 / 16)
    # large counts stay exact and finite (big integers, one division)
    assert mcnemar_p(4000, 4300) == pytest.approx(0.00103, abs=1e-5)


def paired(
    rows: int,
    only_champion: int,
    only_newcomer: int,
    digit: int | None = None,
    seed: int = 0,
    both_wrong: int = 0,
) -> Evidence:
    """Evidence with these discordant counts (with `digit`: the champion-only rows are its)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, rows)
    if digit is not None:
        labels[:only_champion] = digit
        labels[only_champion:][labels[only_champion:] == digit] = (digit + 1) % 10
    old, new = labels.copy(), labels.copy()
    wrong = (labels + 1) % 10
    new[:only_champion] = wrong[:only_champion]
    old[only_champion : only_champion + only_newcomer] = wrong[
        only_champion : only_champion + only_newcomer
    ]
    if both_wrong:
        old[-both_wrong:] = new[-both_wrong:] = wrong[-both_wrong:]
    return compare_predictions(labels, old, new, champion="v0001", newcomer="v0002", data="rows")


def test_evidence_table_and_classes() -> None:
    evidence = paired(1000, 20, 50)
    table = evidence.table
    assert (table.only_champion, table.only_newcomer, table.both_wrong) == (20, 50, 0)
    assert table.both_right == 930 and evidence.rows == 1000
    assert evidence.newcomer_accuracy - evidence.champion_accuracy == pytest.approx(0.03)
    assert evidence.p_value == pytest.approx(mcnemar_p(20, 50))
    assert sum(item.rows for item in evidence.classes) == 1000
    assert Evidence.from_dict(evidence.to_dict()) == evidence


def test_significant_needs_more_than_chance_better_takes_any_gain() -> None:
    close = paired(10_000, 60, 75)  # ahead by 15 digits of 135 discordant: p ~ 0.23
    sure = paired(10_000, 40, 90)  # p ~ 1e-5
    assert not judge(PromotionPolicy("significant"), close).promoted
    assert judge(PromotionPolicy("significant"), close).close_call
    assert judge(PromotionPolicy("better"), close).promoted
    assert judge(PromotionPolicy("better"), close).close_call  # ahead but not significantly
    assert judge(PromotionPolicy("significant"), sure).promoted
    assert "p = " in judge(PromotionPolicy("significant"), close).sentence
    tie = paired(10_000, 50, 50)
    assert judge(PromotionPolicy("better"), tie).promoted  # >= : today's rule
    assert not judge(PromotionPolicy("better", min_delta=0.001), tie).promoted
    assert not judge(PromotionPolicy("significant"), tie).promoted


def test_class_regression_is_refused_under_every_policy_naming_the_digit() -> None:
    evidence = paired(10_000, 40, 120, digit=7)  # much better overall, lost 40 sevens
    assert evidence.newcomer_ahead and evidence.p_value < 1e-6
    for name, verdict in every_policy(evidence).items():
        assert not verdict.promoted, name
        assert verdict.guardrail == "class_recall"
        assert "digit 7" in verdict.sentence


def test_floor_and_recent_data_guardrails() -> None:
    evidence = paired(1000, 0, 60, both_wrong=50)  # 0.89 -> 0.95
    floor = judge(PromotionPolicy("better", min_accuracy=0.99), evidence)
    assert (floor.promoted, floor.guardrail) == (False, "min_accuracy")
    recent_worse = paired(2000, 90, 40, seed=1)
    verdict = judge(PromotionPolicy("better"), evidence, recent_worse)
    assert (verdict.promoted, verdict.guardrail) == (False, "recent_data")
    assert judge(PromotionPolicy("better"), evidence, paired(2000, 10, 12)).promoted
    assert first_model(PromotionPolicy(), "v0001", 0.5).promoted
    assert not first_model(PromotionPolicy(min_accuracy=0.9), "v0001", 0.5).promoted


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"policy": "best"}, "policy must be one of better, significant, got 'best'"),
        ({"alpha": 0}, "alpha must be a number between 0 and 1, got 0"),
        ({"min_accuracy": 1.5}, "min_accuracy must be in 0..1, got 1.5"),
        ({"min_delta": -0.1}, "min_delta must be a finite number >= 0, got -0.1"),
    ],
)
def test_bad_policy_parameters_are_one_line(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}$"):
        PromotionPolicy(**kwargs)  # type: ignore[arg-type]


def test_the_guardrail_simulation_reproduces_its_docstring() -> None:
    """The module docstring's numbers, on fewer draws: honest reseeds pass, 3 points are caught."""
    lines = simulate(draws=1500, seed=0)
    refused = [float(line.split("refused")[1].split("%")[0]) for line in lines]
    assert refused[0] < 1.5  # honest reseed: 0.3% at 20,000 draws
    assert refused[3] > 94  # one class 3 points worse: 98%
    assert refused[4] == 100.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--policy", "best"], "argument --policy: invalid choice: 'best'"),
        (["--alpha", "0"], "alpha must be a number between 0 and 1, got 0.0"),
        (["--approval", "maybe"], "argument --approval: invalid choice: 'maybe'"),
        (["--approval-timeout", "0"], "approval_timeout must be a number of seconds >= 1"),
        (["--min-accuracy", "2"], "min_accuracy must be in 0..1, got 2.0"),
    ],
)
def test_promotion_parameters_are_declared_and_checked_before_any_work(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    """`mnistnn train` takes the promotion parameters from their one declaration."""
    from flows.cli.main import main

    try:
        status = main(["--data-dir", str(tmp_path), "train", *argv])
    except SystemExit as exc:  # argparse refuses a value outside the declared choices
        status = exc.code
    assert status in (1, 2)
    assert message in capsys.readouterr().err
    assert not (tmp_path / "processed").exists()  # refused before any work
