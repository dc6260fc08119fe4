"""The sample-quality table `aegen evaluate` and `aegen compare` print: the real data, the
reconstruction floor, then every sampler, each score shown to three significant digits whatever
its scale (an FD of 0.0107 stays 0.0107, one of 1,234 stays 1,234)."""

from __future__ import annotations

import math
from typing import Any

COLUMNS = [  # key in a row of scores, title
    ("images", "n"),
    ("fd_aegen", "FD ↓"),
    ("kid", "KID ↓ (± se)"),
    ("precision", "precision ↑"),
    ("recall", "recall ↑"),
    ("label_entropy", "label entropy ↑"),
    ("hf_ratio", "HF ratio"),
]
REAL = "real data (training images)"
FLOOR = "floor: their reconstructions"


def significant(value: object, digits: int = 3) -> str:
    """A number to `digits` significant digits, without exponents between 1e-4 and 1e6."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return "—"  # nothing scored (or, in a damaged file, not a number)
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if isinstance(value, int) or (abs(value) >= 10 ** (digits - 1) and value == round(value)):
        return f"{value:,.0f}"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= 6 or magnitude < -4:
        return f"{value:.{digits - 1}e}"
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


def _kid(scores: dict[str, Any]) -> str:
    if scores.get("kid") is None:
        return "—"
    error = scores.get("kid_se")
    shown = significant(scores["kid"])
    return shown if error is None or math.isnan(error) else f"{shown} ± {significant(error, 2)}"


def score_rows(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, scores) of one evaluated run: real data, floor (where scored), each sampler."""
    rows = [(REAL, metrics["real_data"])]
    if "reconstructed_data" in metrics:
        rows.append((FLOOR, metrics["reconstructed_data"]))
    rows += list(metrics["samplers"].items())
    return rows


def cells(scores: dict[str, Any]) -> list[str]:
    """The table's cells of one row of scores (a score the run lacks shows as a dash)."""
    shown = []
    for key, _ in COLUMNS:
        if key == "kid":
            shown.append(_kid(scores))
        elif key == "images":
            count = scores.get("images")
            shown.append("—" if count is None else f"{count:,d}")
        else:
            shown.append(significant(scores.get(key)))
    return shown


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns aligned with spaces: the first left, the others right."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    return "\n".join([line(header), *[line(row) for row in rows]]) + "\n"


def run_table(metrics: dict[str, Any]) -> str:
    """One evaluated run's table, with the protocol its numbers depend on below it."""
    header = ["", *[title for _, title in COLUMNS]]
    table = text_table(header, [[name, *cells(scores)] for name, scores in score_rows(metrics)])
    protocol = metrics["protocol"]
    judge = metrics.get("classifier", {})
    accuracy = judge.get("test_accuracy")
    judged = f", accuracy {accuracy:.1%}" if isinstance(accuracy, (int, float)) else ""
    return (
        table + f"reference: {protocol['reference']}; judge: {protocol.get('judge')}{judged}; "
        "FD depends on n (compare only at the same n), KID does not\n"
    )
