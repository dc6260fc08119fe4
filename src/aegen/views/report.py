"""`aegen report`: one self-contained HTML page per run (or several runs side by side).

Everything the page shows is embedded (PNG as data: URLs, the style inline), so the file can be
mailed, archived or opened on a machine with no internet and no aegen. Pictures the run folder
holds are shown (read like every run-folder file: a symbolic link, which could point at any file
of the machine, is skipped with a note), and nothing else: a report draws no samples, fits no
sampler and writes nothing into a run folder, so it takes seconds; the page says which samplers
`aegen evaluate` would add and which command draws missing pictures. A history or scores file
that cannot be read is a note, not a failure.
This module only gathers plain data; report.html does all the markup, with autoescape on, so
nothing a run folder holds (its name, config values, metric keys) can inject markup.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jinja2

from aegen.errors import AegenError, ConfigError, RunError
from aegen.files.atomic import write_atomic
from aegen.models import preset
from aegen.runs.config import RunConfig, read_run_config
from aegen.runs.folder import (
    OLD_SCORES,
    SCORES,
    read_diagnosis,
    read_history,
    read_run_file,
    read_scores,
)
from aegen.trained import STANDARD_SAMPLERS, standard_samplers
from aegen.version import __version__
from aegen.views.comparison import (
    COLUMNS,
    HEADER,
    comparison_notes,
    comparison_rows,
    table_cells,
)
from aegen.views.figures import png_data_url
from aegen.views.score_table import score_rows

PICTURES = [
    ("loss.png", "Loss per epoch"),
    ("reconstructions.png", "Held-out images (top) and their reconstructions (bottom)"),
    ("latent.png", "Held-out codes"),
    ("interpolations.png", "Straight lines between the codes of held-out pairs"),
    ("manifold.png", "Decoded grid of 2-d codes"),
    ("denoising.png", "The prior's path from noise (left) to a code (right), decoded on the way"),
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _cell_text(value: Any) -> str:
    """A table cell's text: floats to 4 significant digits, ints with thousands separators."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,d}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "—" if value is None else str(value)


# PackageLoader reads the template from the installed package (wheel, editable or zip alike).
ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("aegen", "views"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENVIRONMENT.filters["cell_text"] = _cell_text


def table(header: list[str], rows: list[list[Any]]) -> str:
    """An HTML table with escaped cells and right-aligned numbers."""
    macros: Any = ENVIRONMENT.get_template("report.html").module  # the template's macros
    return str(macros.table(header, rows))


def _config_rows(config: RunConfig) -> list[list[Any]]:
    return [
        ["model", config.model],
        ["data set", config.dataset],
        ["train / val images", f"{config.data.n_train:,d} / {config.data.n_val:,d}"],
        *[[f"model: {k}", v] for k, v in config.model_config.items()],
        *[[f"train: {k}", v] for k, v in config.settings.section("train").items()],
        ["default sampler", config.default_sampler],
        ["aegen version", config.aegen_version or "?"],
    ]


def _history(history: list[dict]) -> dict[str, Any]:
    if not history:
        return {"epochs": 0, "seconds": 0.0, "history_rows": []}
    last = history[-1]
    keys = [k for k in last if k not in ("epoch", "seconds") and not k.startswith("val_")]
    return {
        "epochs": len(history),
        "seconds": sum(m.get("seconds", 0.0) for m in history),
        "history_rows": [[k, last[k], last.get(f"val_{k}", "")] for k in keys],
    }


OLD_LIKELIHOODS = {  # scores.json before the likelihood named itself
    "grayscale_bce": "Bernoulli of pixel values in [0, 1] (summed BCE)",
    "binarised": "Bernoulli of binarised pixels (a proper likelihood)",
}
SAMPLER_COLUMNS = [*COLUMNS, ("hf_ratio", "HF ratio")]  # the comparison's, and the HF ratio
SAMPLER_HEADER = ["", *[title for _, title in SAMPLER_COLUMNS]]


def _likelihood_rows(likelihood: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for kind, scores in likelihood.items():
        if not isinstance(scores, dict):  # a note, e.g. that the NLL is conditional on y
            rows.append(["NLL: " + kind, scores])
            continue
        named = scores.get("likelihood") or OLD_LIKELIHOODS.get(kind, kind)
        draws = f"k={scores['k']}" + (
            f", {scores['images']:,d} images" if "images" in scores else ""
        )
        rows += [
            [f"NLL, nats: {named} (importance-sampled, {draws})", scores["nll"]],
            [f"ELBO, nats: {named}", scores["elbo"]],
        ]
    return rows


def _scores(metrics: dict | None) -> dict[str, Any]:
    if metrics is None:
        return {"protocol": None, "score_rows": [], "sampler_header": [], "sampler_rows": []}
    recon = metrics["reconstruction"]
    rows = [
        ["reconstruction: the model's loss", recon["model_loss"]],
        *(
            [["its learned prior's loss (not part of the above)", recon["prior_loss"]]]
            if "prior_loss" in recon
            else []
        ),
        ["reconstruction: per-pixel MSE in [0, 1]", recon["pixel_mse"]],
        *[
            [f"reconstruction: {key}", recon[key]]
            for key in ("psnr", "ssim", "colour_error")
            if key in recon
        ],
        *_likelihood_rows(metrics.get("likelihood", {})),
    ]
    samplers = [
        [name, *[scores.get(key) for key, _ in SAMPLER_COLUMNS]]
        for name, scores in score_rows(metrics)
    ]
    accuracy = metrics.get("classifier", {}).get("test_accuracy")
    protocol = {
        "samples": metrics["protocol"].get("samples_per_sampler"),
        "reference": metrics["protocol"].get("reference"),
        "features": metrics["protocol"].get("features"),
        "accuracy": f"{accuracy:.3f}" if isinstance(accuracy, (int, float)) else "not measured",
    }
    return {
        "protocol": protocol,
        "score_rows": rows,
        "sampler_header": SAMPLER_HEADER,
        "sampler_rows": samplers,
    }


def _samples(run_dir: Path, samplers: list[str]) -> list[dict[str, str]]:
    """The samples pictures the run folder holds, of the samplers given, in their order."""
    figures = []
    for name in samplers:
        saved = run_dir / f"samples-{name}.png"
        if not os.path.lexists(saved):
            continue
        try:
            png = _read_png(saved)
        except (AegenError, OSError) as exc:
            figures.append({"name": name, "error": str(exc)})
            continue
        figures.append(
            {
                "name": name,
                "error": "",
                "src": png_data_url(png),
                "caption": f"sampler {name}",
                "alt": f"samples from {name}",
            }
        )
    return figures


def _read_png(path: Path) -> bytes:
    """A picture of the run folder, through the run folder's reader (no links), if it is a PNG."""
    png = read_run_file(path)
    if not png.startswith(PNG_SIGNATURE):
        raise RunError(f"{path} is not a PNG picture")
    return png


def _pictures(run_dir: Path) -> dict[str, Any]:
    missing = [name for name, _ in PICTURES[:4] if not os.path.lexists(run_dir / name)]
    pictures, skipped = [], []
    for name, caption in PICTURES:
        if os.path.lexists(run_dir / name):
            try:
                png = _read_png(run_dir / name)
            except (AegenError, OSError) as exc:
                skipped.append(str(exc))
                continue
            pictures.append({"src": png_data_url(png), "caption": caption, "alt": caption})
    return {"pictures": pictures, "pictures_missing": missing, "pictures_skipped": skipped}


def _standard_samplers(config: RunConfig) -> list[str]:
    """The samplers an unevaluated run's page shows samples of (its model's standard ones)."""
    try:
        return standard_samplers(preset(config.model).model_class)
    except ConfigError:  # a model this aegen does not know: its page says so elsewhere
        return list(STANDARD_SAMPLERS)


def _run(run_dir: Path) -> dict[str, Any]:
    """Everything the page shows of one run, as plain data for the template."""
    config = read_run_config(run_dir)
    metrics, scores_error = None, ""
    if any(os.path.lexists(run_dir / name) for name in (SCORES, OLD_SCORES)):  # evaluated
        try:
            metrics = read_scores(run_dir)
        except RunError as exc:
            scores_error = str(exc)
    history, history_error = [], ""
    try:
        history = read_history(run_dir)
    except RunError as exc:
        history_error = str(exc)
    diagnosis, diagnosis_error = None, ""
    try:
        diagnosis = read_diagnosis(run_dir)
    except RunError as exc:
        diagnosis_error = str(exc)
    standard = _standard_samplers(config)
    samplers = list(metrics["samplers"]) if metrics else standard
    shown = _samples(run_dir, samplers)
    drawn = {figure["name"] for figure in shown}
    not_drawn = [name for name in standard if name not in drawn]
    return {
        "findings": diagnosis["findings"] if diagnosis else [],
        "diagnosed": diagnosis is not None,
        "diagnosis_error": diagnosis_error,
        "title": f"{config.model} on {config.dataset}",
        "path": str(run_dir),
        "config_rows": _config_rows(config),
        **_history(history),
        "history_error": history_error,
        **_scores(metrics),
        "scores_error": scores_error,
        "samples": shown,
        "not_drawn": [] if metrics else not_drawn,
        **_pictures(run_dir),
    }


def _comparison(run_dirs: list[Path]) -> dict[str, Any]:
    evaluated, notes = [], []
    for run_dir in run_dirs:
        try:
            evaluated.append(read_scores(run_dir))
        except RunError as exc:
            notes.append(str(exc))
    rows = [table_cells(row) for row in comparison_rows(evaluated)]
    return {"header": HEADER, "rows": rows, "notes": notes, "rule": comparison_notes(evaluated)}


def report_html(run_dirs: list[Path]) -> str:
    """The whole self-contained page for one or more runs."""
    run_dirs = [Path(r) for r in run_dirs]
    if not run_dirs:
        raise RunError("give at least one run folder")
    comparison = _comparison(run_dirs) if len(run_dirs) > 1 else None
    runs = [_run(r) for r in run_dirs]
    return ENVIRONMENT.get_template("report.html").render(
        names=[str(r) for r in run_dirs], version=__version__, comparison=comparison, runs=runs
    )


def write_report(run_dirs: list[Path], out: Path) -> Path:
    """Write the report atomically to out and return its path."""
    write_atomic(out, report_html(run_dirs).encode("utf-8"))
    return out


__all__ = ["report_html", "write_report", "table"]
