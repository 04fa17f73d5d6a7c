"""The promotion evidence as a person reads it: one sentence, the 2x2 table, p, each class."""

from __future__ import annotations

from typing import Any

import numpy as np

from mnistnn.report.canvas import ACCURACY_COLOUR, CONFIDENT_COLOUR, new_figure, to_png
from mnistnn.report.markdown import data_uri, escape_cell

FIGURE_FILE = "promotion-recall.png"


def recall_figure(evidence: dict[str, Any]) -> bytes:
    """Each digit's recall under both models, side by side, the difference written above."""
    classes = evidence["classes"]
    digits = np.array([item["digit"] for item in classes])
    old = np.array([item["champion"] for item in classes])
    new = np.array([item["newcomer"] for item in classes])
    figure = new_figure("promotion_recall")
    axes = figure.add_subplot()
    axes.bar(
        digits - 0.2, old, 0.4, label=f"champion {evidence['champion']}", color=ACCURACY_COLOUR
    )
    axes.bar(
        digits + 0.2, new, 0.4, label=f"newcomer {evidence['newcomer']}", color=CONFIDENT_COLOUR
    )
    low = float(min(old.min(), new.min()))
    axes.set_ylim(max(0.0, low - 0.05), 1.0)
    for digit, a, b in zip(digits, old, new, strict=True):
        axes.annotate(f"{100 * (b - a):+.1f}", (digit, max(a, b)), ha="center", va="bottom")
    axes.set_xticks(digits)
    axes.set_xlabel("digit")
    axes.set_ylabel(f"recall on {evidence['data']}")
    axes.legend(loc="lower right")
    return to_png(figure)


def section(decision: dict[str, Any] | None, figure: bytes | None = None) -> str:
    """The report's "Promotion" section (empty for a run that was not registered)."""
    if decision is None:
        return ""
    lines = ["## Promotion", "", f"**{escape_cell(decision['reason'])}**", ""]
    if decision.get("guardrail"):
        lines += [f"Decided by the guardrail `{decision['guardrail']}`.", ""]
    approval = decision.get("approval")
    if approval:
        lines += [
            f"Close call answered **{approval['decision']}** by {escape_cell(approval['by'])} "
            f"at {approval['at']}: {escape_cell(approval.get('comment') or '(no comment)')}",
            "",
        ]
    for title, evidence in (
        ("", decision.get("evidence")),
        (" (recent data)", decision.get("recent_evidence")),
    ):
        if evidence:
            lines += evidence_lines(evidence, title)
    if figure is not None:
        lines += [f"![per-class recall]({data_uri(figure)})", ""]
    return "\n".join(lines)


def evidence_lines(evidence: dict[str, Any], title: str = "") -> list[str]:
    """The 2x2 table, McNemar's p and the per-class recall table of one comparison."""
    table = evidence["table"]
    old, new = evidence["champion"], evidence["newcomer"]
    lines = [
        f"### {new} against champion {old} on {evidence['data']}{title} ({evidence['rows']} rows)",
        "",
        f"| | {new} right | {new} wrong |",
        "|---|---:|---:|",
        f"| {old} right | {table['both_right']} | {table['only_champion']} |",
        f"| {old} wrong | {table['only_newcomer']} | {table['both_wrong']} |",
        "",
        f"Accuracy {evidence['newcomer_accuracy']:.4f} vs {evidence['champion_accuracy']:.4f}; "
        f"McNemar's exact p = {evidence['p_value']:.3g} "
        f"({table['only_newcomer']} digits right only for {new}, "
        f"{table['only_champion']} only for {old}).",
        "",
        f"| digit | rows | {old} recall | {new} recall | difference | p (drop) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {item['digit']} | {item['rows']} | {item['champion']:.4f} | {item['newcomer']:.4f} | "
        f"{100 * item['difference']:+.2f} pt | {item['p_drop']:.3g} |"
        for item in evidence["classes"]
    ]
    return [*lines, ""]
