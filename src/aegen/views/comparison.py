"""`aegen compare`: one table (model x sampler x every score) and one picture of their samples."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from aegen.store.atomic import write_atomic, write_json
from aegen.store.grid import tile
from aegen.store.run_folder import read_scores
from aegen.trained import load
from aegen.views.figures import figure_png

SAMPLES_PER_ROW = 12
COLUMNS = [
    ("fd_aegen", "FD-aegen ↓", "{:.2f}"),
    ("precision", "precision ↑", "{:.3f}"),
    ("recall", "recall ↑", "{:.3f}"),
    ("label_entropy", "label entropy ↑", "{:.3f}"),
    ("confident_share", "confident ↑", "{:.3f}"),
]


def comparison_rows(all_metrics: list[dict]) -> list[dict]:
    """One row per (run, sampler) plus one 'real data' row per data set and judge. Scores of
    different judges (the features they are computed in) are not comparable: each row names
    its judge, and the table marks a data set scored by more than one."""
    rows, seen_judges = [], set()
    for metrics in all_metrics:
        dataset, judge = metrics["dataset"], judge_name(metrics)
        if (dataset, judge) not in seen_judges:
            seen_judges.add((dataset, judge))
            rows.append(
                {
                    "dataset": dataset,
                    "judge": judge,
                    "model": "real data",
                    "sampler": "training images",
                    **_scores(metrics["real_data"]),
                }
            )
        likelihood = metrics.get("likelihood", {})
        floor = [("reconstructions (floor)", metrics.get("reconstructed_data", {}))]
        for sampler, scores in [
            *(floor if "reconstructed_data" in metrics else []),
            *metrics["samplers"].items(),
        ]:
            rows.append(
                {
                    "dataset": dataset,
                    "judge": judge,
                    "model": metrics["model"],
                    "sampler": sampler,
                    "run": metrics["run"],
                    **_scores(scores),
                    "pixel_mse": metrics["reconstruction"]["pixel_mse"],
                    "nll_grayscale": likelihood.get("grayscale_bce", {}).get("nll"),
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
    return {key: scores.get(key) for key, _, _ in COLUMNS}


def _cell(value: float | None, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)


def markdown_table(rows: list[dict]) -> str:
    """The comparison as a markdown table."""
    header = [
        "data set",
        "judge",
        "model",
        "sampler",
        *[title for _, title, _ in COLUMNS],
        "recon MSE ↓",
        "NLL gray / binarised ↓",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 4 + "---:|" * (len(header) - 4)]
    for row in rows:
        nll = (
            f"{row['nll_grayscale']:.1f} / {row['nll_binarised']:.1f}"
            if row.get("nll_grayscale") is not None
            else ""
        )
        mse = f"{row['pixel_mse']:.4f}" if "pixel_mse" in row else ""
        cells = [
            row["dataset"],
            row["judge"],
            row["model"],
            row["sampler"],
            *[_cell(row[key], fmt) for key, _, fmt in COLUMNS],
            mse,
            nll,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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


def compare_runs(run_dirs: list[Path], out_dir: Path, extra: dict | None = None) -> list[dict]:
    """Write comparison.md, comparison.json and comparison.png for evaluated runs into out_dir."""
    # The folder as given here, not as recorded: a run evaluated elsewhere may have moved.
    all_metrics = [{**read_scores(run_dir), "run": str(run_dir)} for run_dir in run_dirs]
    rows = comparison_rows(all_metrics)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "comparison.json", {**(extra or {}), "rows": rows})
    write_atomic(out_dir / "comparison.md", markdown_table(rows).encode())
    save_sample_strips(all_metrics, out_dir / "comparison.png")
    return rows


__all__ = ["compare_runs", "markdown_table", "comparison_rows"]
