"""`aegen compare`: one table (model x sampler x every score) and one picture of their samples."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from aegen.export.grid import tile
from aegen.files.atomic import write_atomic, write_json
from aegen.runs.folder import read_scores
from aegen.trained import load
from aegen.views.figures import figure_png
from aegen.views.score_table import significant, text_table

SAMPLES_PER_ROW = 12
COLUMNS = [  # key in a row of scores, title
    ("images", "n"),
    ("fd_aegen", "FD-aegen ↓"),
    ("kid", "KID ↓"),
    ("kid_se", "KID se"),
    ("precision", "precision ↑"),
    ("recall", "recall ↑"),
    ("label_entropy", "label entropy ↑"),
    ("confident_share", "confident ↑"),
]
RULE = (
    "scores compare only between runs scored by the same judge against the same reference "
    "images; FD also needs the same number of images n (it grows as n shrinks), KID does not "
    "(it is unbiased at any n; its standard error says how far apart two KIDs must be)"
)


def comparable_key(metrics: dict) -> tuple[str, str, str]:
    """What must match for two runs' scores to compare: data set and judge, reference."""
    protocol = metrics.get("protocol", {})
    return (metrics["dataset"], judge_name(metrics), str(protocol.get("reference")))


def comparison_notes(all_metrics: list[dict]) -> list[str]:
    """One line per way the runs' scores fail the comparison rule (none when they all meet it)."""
    notes = []
    keys = list(dict.fromkeys(comparable_key(m) for m in all_metrics))  # in the runs' order
    if len(keys) > 1:
        notes.append(
            f"these runs were scored by {len(keys)} different judges or references: compare "
            "scores only within one (the table's 'group' column); " + RULE
        )
    for key in keys:
        counts = {
            m["protocol"].get("samples_per_sampler")
            for m in all_metrics
            if comparable_key(m) == key
        }
        if len(counts) > 1:
            listed = ", ".join(str(c) for c in sorted(counts, key=lambda c: (str(type(c)), c)))
            notes.append(
                f"{key[0]}: runs scored on different sample counts ({listed}): their FD does not "
                "compare, their KID does"
            )
    return notes


def comparison_rows(all_metrics: list[dict]) -> list[dict]:
    """One row per (run, sampler) plus one 'real data' row per group of comparable runs (same
    data set, judge and reference); each row names its group (1, 2, ...)."""
    rows: list[dict] = []
    groups: dict[tuple[str, str, str], int] = {}
    for metrics in all_metrics:
        key = comparable_key(metrics)
        dataset, judge = key[0], key[1]
        if key not in groups:
            groups[key] = len(groups) + 1
            rows.append(
                {
                    "group": groups[key],
                    "dataset": dataset,
                    "judge": judge,
                    "model": "real data",
                    "sampler": "training images",
                    **_scores(metrics["real_data"]),
                }
            )
        likelihood = metrics.get("likelihood", {})
        pixel = likelihood.get("pixel_bce", likelihood.get("grayscale_bce", {}))
        floor = [("reconstructions (floor)", metrics.get("reconstructed_data", {}))]
        for sampler, scores in [
            *(floor if "reconstructed_data" in metrics else []),
            *metrics["samplers"].items(),
        ]:
            rows.append(
                {
                    "group": groups[key],
                    "dataset": dataset,
                    "judge": judge,
                    "model": metrics["model"],
                    "sampler": sampler,
                    "run": metrics["run"],
                    **_scores(scores),
                    "pixel_mse": metrics["reconstruction"]["pixel_mse"],
                    "nll_pixels": pixel.get("nll"),
                    "nll_binarised": likelihood.get("binarised", {}).get("nll"),
                    "classifier_accuracy": metrics["classifier"].get("test_accuracy"),
                }
            )
    return rows


def judge_name(metrics: dict) -> str:
    """Which features scored a run: the judge's kind and, for a trained one, what it saw."""
    record = metrics.get("classifier", {})
    kind = record.get("kind", "trained-cnn")
    if kind == "random-cnn":
        return f"random-cnn seed {record.get('seed', 0)}"
    return f"{kind} ({record.get('train_images', '?')} images, v{record.get('version', '?')})"


def _scores(scores: dict) -> dict:
    return {key: scores.get(key) for key, _ in COLUMNS}


def _cell(key: str, value: float | None) -> str:
    if key == "images":
        return "—" if value is None else f"{int(value):,d}"
    return significant(value)


def table_cells(row: dict) -> list[str]:
    """A comparison row as text cells: group, data set, judge, model, sampler, the scores, the
    reconstruction MSE and the NLL (pixel values / binarised, where the run has them)."""
    nll = " / ".join(
        significant(row[key]) for key in ("nll_pixels", "nll_binarised") if row.get(key) is not None
    )
    mse = significant(row["pixel_mse"]) if "pixel_mse" in row else ""
    return [
        str(row["group"]),
        row["dataset"],
        row["judge"],
        row["model"],
        row["sampler"],
        *[_cell(key, row[key]) for key, _ in COLUMNS],
        mse,
        nll,
    ]


HEADER = [
    "group",
    "data set",
    "judge",
    "model",
    "sampler",
    *[title for _, title in COLUMNS],
    "recon MSE ↓",
    "NLL pixels / binarised ↓",
]


def markdown_table(rows: list[dict], notes: list[str] | None = None) -> str:
    """The comparison as a markdown table, with the notes on what does not compare below."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * 5 + "---:|" * (len(HEADER) - 5)]
    lines += ["| " + " | ".join(table_cells(row)) + " |" for row in rows]
    return "\n".join(lines + [f"\nnote: {note}" for note in notes or []]) + "\n"


def terminal_table(rows: list[dict], notes: list[str] | None = None) -> str:
    """The comparison as aligned text for the terminal, then the notes."""
    table = text_table(HEADER, [table_cells(row) for row in rows])
    return table + "".join(f"note: {note}\n" for note in notes or [])


def save_sample_strips(all_metrics: list[dict], path: Path, seed: int = 0) -> None:
    """Rows of samples, one row per model x sampler, labelled on the left."""
    rows = [(m, sampler) for m in all_metrics for sampler in m["samplers"]]
    fig = Figure(figsize=(SAMPLES_PER_ROW * 0.6 + 2.2, len(rows) * 0.62 + 0.3))
    for i, (metrics, sampler) in enumerate(rows):
        images = load(metrics["run"]).sample(SAMPLES_PER_ROW, seed=seed, sampler=sampler)
        strip = tile(images, SAMPLES_PER_ROW, padding=1, pad_value=1.0).expand(3, -1, -1)
        ax = fig.add_subplot(len(rows), 1, i + 1)
        ax.imshow(strip.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(
            f"{metrics['dataset']}\n{metrics['model']} / {sampler}",
            rotation=0,
            ha="right",
            va="center",
            fontsize=8,
        )
    write_atomic(path, figure_png(fig))


def compare_runs(
    run_dirs: list[Path], out_dir: Path, extra: dict | None = None
) -> tuple[list[dict], list[str]]:
    """Write comparison.md, comparison.json and comparison.png for evaluated runs into out_dir;
    returns the rows and the notes on scores that do not compare."""
    # The folder as given here, not as recorded: a run evaluated elsewhere may have moved.
    all_metrics = [{**read_scores(run_dir), "run": str(run_dir)} for run_dir in run_dirs]
    rows = comparison_rows(all_metrics)
    notes = comparison_notes(all_metrics)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        out_dir / "comparison.json", {**(extra or {}), "rule": RULE, "notes": notes, "rows": rows}
    )
    write_atomic(out_dir / "comparison.md", markdown_table(rows, notes).encode())
    save_sample_strips(all_metrics, out_dir / "comparison.png")
    return rows, notes


__all__ = ["compare_runs", "markdown_table", "terminal_table", "comparison_rows"]
