"""The report's Promotion section and its per-class recall figure."""

from __future__ import annotations

import numpy as np

from mnistnn.registry.evidence import compare_predictions
from mnistnn.report import canvas
from mnistnn.report.promotion import recall_figure, section


def test_section_figure_and_named_guardrail() -> None:
    labels = np.repeat(np.arange(10), 50)
    old = labels.copy()
    new = labels.copy()
    new[labels == 4] = 9  # the newcomer lost every four
    evidence = compare_predictions(
        labels, old, new, champion="v0001", newcomer="v0002", data="the test set"
    ).to_dict()
    png = recall_figure(evidence)
    assert canvas.png_size(png) == canvas.FIGURE_SIZES["promotion_recall"]
    decision = {
        "reason": "better: v0002 (0.9000) vs champion v0001 (1.0000): refused, digit 4 lost recall",
        "guardrail": "class_recall",
        "evidence": evidence,
        "approval": {"decision": "rejected", "by": "ana", "at": "2026-12-03", "comment": "no"},
    }
    text = section(decision, png)
    assert text.startswith("## Promotion\n\n**better: v0002")
    assert "Decided by the guardrail `class_recall`." in text
    assert "Close call answered **rejected** by ana at 2026-12-03: no" in text
    assert "| v0001 right | 450 | 50 |" in text and "| v0001 wrong | 0 | 0 |" in text
    assert "| 4 | 50 | 1.0000 | 0.0000 | -100.00 pt |" in text
    assert "data:image/png;base64," in text
    assert section(None) == ""
