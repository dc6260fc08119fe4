"""`aegen report`: one self-contained HTML page per run (or several runs side by side).

Everything the page shows is embedded (PNG as data: URLs, the style inline), so the file can be
mailed, archived or opened on a machine with no internet and no aegen. Pictures the run folder
already holds are reused; the rest (samples per sampler) are drawn from the run on the spot.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from aegen.errors import AegenError, RunError
from aegen.store.atomic import write_atomic
from aegen.store.exports import image_grid_png
from aegen.store.run_folder import read_config, read_history, read_scores
from aegen.trained import load
from aegen.version import __version__
from aegen.views.comparison import COLUMNS, comparison_rows
from aegen.views.figures import png_data_url
from aegen.views.run_pictures import write_run_pictures

SAMPLERS = ("prior", "gaussian", "gmm")
N_SAMPLES = 64
PICTURES = [("loss.png", "Loss per epoch"),
            ("reconstructions.png", "Held-out images (top) and their reconstructions (bottom)"),
            ("latent.png", "Held-out codes"),
            ("interpolations.png", "Straight lines between the codes of held-out pairs"),
            ("manifold.png", "Decoded grid of 2-d codes")]
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; background: #fafafa; }
h1 { margin-top: 0; } h2 { border-bottom: 2px solid #ccc; } h3 { margin-bottom: .3rem; }
.runs { display: flex; gap: 1.5rem; overflow-x: auto; align-items: flex-start; }
.run { flex: 1 0 26rem; max-width: 60rem; background: #fff; padding: 0 1rem 1rem;
       border: 1px solid #ddd; border-radius: 6px; }
table { border-collapse: collapse; font-size: .85rem; margin: .4rem 0; }
th, td { border: 1px solid #ddd; padding: .2rem .5rem; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: .6rem 0; } .grids { display: flex; flex-wrap: wrap; gap: .8rem; }
.grids figure { width: 15rem; margin: 0; } figcaption { font-size: .8rem; color: #555; }
img { max-width: 100%; image-rendering: pixelated; }
.note { color: #8a5a00; font-size: .85rem; }
"""


def _figure(png: bytes, caption: str, alt: str) -> str:
    return (f'<figure><img src="{png_data_url(png)}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="number">{value:.4g}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="number">{value:,d}</td>'
    if isinstance(value, (dict, list)):
        value = json.dumps(value)
    return f"<td>{html.escape(str(value))}</td>"


def table(header: list[str], rows: list[list[Any]]) -> str:
    """An HTML table with escaped cells and right-aligned numbers."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _config_section(config: dict) -> str:
    rows = [["model", config["model"]], ["data set", config["data"]["dataset"]],
            ["train / val images", f"{config['data']['n_train']:,d} / {config['data']['n_val']:,d}"],
            *[[f"model: {k}", v] for k, v in config["model_config"].items()],
            *[[f"train: {k}", v] for k, v in config["train"].items()],
            ["default sampler", config["default_sampler"]],
            ["aegen version", config.get("aegen_version", "?")]]
    return "<h3>Configuration</h3>" + table(["setting", "value"], rows)


def _history_section(history: list[dict]) -> str:
    if not history:
        return _note("No finished epoch recorded (history.jsonl is empty).")
    last = history[-1]
    keys = [k for k in last if k not in ("epoch", "seconds") and not k.startswith("val_")]
    rows = [[k, last[k], last.get(f"val_{k}", "")] for k in keys]
    seconds = sum(m.get("seconds", 0.0) for m in history)
    return (f"<h3>Training: {len(history)} epochs, {seconds:.1f} s</h3>"
            + table(["last epoch", "train", "validation"], rows))


def _metrics_section(metrics: dict | None, run_dir: Path) -> str:
    if metrics is None:
        return "<h3>Scores</h3>" + _note(f"Not evaluated yet: run `aegen evaluate {run_dir}`.")
    parts = ["<h3>Scores on the test split</h3>"]
    recon = metrics["reconstruction"]
    rows = [["reconstruction: model loss", recon["model_loss"]],
            ["reconstruction: per-pixel MSE in [0, 1]", recon["pixel_mse"]]]
    for kind, scores in metrics.get("likelihood", {}).items():
        if not isinstance(scores, dict):  # a note, e.g. that the NLL is conditional on y
            rows.append(["likelihood", scores])
            continue
        pixels = "binarised pixels" if kind == "binarised" else "grayscale pixels (BCE)"
        rows += [[f"NLL, {pixels}, nats (importance-sampled, k={scores['k']})", scores["nll"]],
                 [f"ELBO, {pixels}, nats", scores["elbo"]]]
    parts.append(table(["measure", "value"], rows))
    header = ["sampler", "FD-aegen ↓", "precision ↑", "recall ↑", "label entropy ↑", "confident ↑"]
    keys = ["fd_aegen", "precision", "recall", "label_entropy", "confident_share"]
    sample_rows = [["real data (training images)", *[metrics["real_data"][k] for k in keys]]]
    sample_rows += [[name, *[s[k] for k in keys]] for name, s in metrics["samplers"].items()]
    parts.append(table(header, sample_rows))
    accuracy = metrics.get("classifier", {}).get("test_accuracy")
    accuracy = f"{accuracy:.3f}" if isinstance(accuracy, (int, float)) else "not measured"
    parts.append(_note(f"Protocol: {metrics['protocol'].get('samples_per_sampler')} samples per "
                       f"sampler against the {metrics['protocol'].get('reference')}; features "
                       f"of aegen's classifier (test accuracy {accuracy})."))
    return "".join(parts)


def _samples_section(run_dir: Path, samplers: list[str], data_root: Any) -> str:
    parts, trained = [], None
    for name in samplers:
        saved = run_dir / f"samples-{name}.png"
        try:
            if saved.is_file():
                png = saved.read_bytes()
            else:
                trained = trained or load(run_dir, data_root)
                png = image_grid_png(trained.sample(N_SAMPLES, seed=0, sampler=name), 8)
        except AegenError as exc:
            parts.append(_note(f"{name}: not available ({exc})"))
            continue
        parts.append(_figure(png, f"sampler {name}", f"samples from {name}"))
    return '<h3>Samples per sampler</h3><div class="grids">' + "".join(parts) + "</div>"


def _pictures_section(run_dir: Path, data_root: Any) -> str:
    missing = [name for name, _ in PICTURES[:4] if not (run_dir / name).is_file()]
    note = ""
    if missing:  # a run copied without its pictures: draw them again
        try:
            write_run_pictures(load(run_dir, data_root), read_history(run_dir))
        except AegenError as exc:
            note = _note(f"Pictures missing and not redrawn ({exc}).")
    figures = [_figure((run_dir / name).read_bytes(), caption, caption)
               for name, caption in PICTURES if (run_dir / name).is_file()]
    return "<h3>Pictures</h3>" + note + "".join(figures)


def run_section(run_dir: Path, data_root: Any = None) -> str:
    """The HTML of one run: config, training, scores, samples per sampler and pictures."""
    config = read_config(run_dir)
    try:
        metrics = read_scores(run_dir)
    except RunError:
        metrics = None
    samplers = list(metrics["samplers"]) if metrics else list(SAMPLERS)
    title = f"{config['model']} on {config['data']['dataset']}"
    return (f'<section class="run"><h2>{html.escape(title)}</h2>'
            f"<p><code>{html.escape(str(run_dir))}</code></p>"
            + _config_section(config) + _history_section(read_history(run_dir))
            + _metrics_section(metrics, run_dir) + _samples_section(run_dir, samplers, data_root)
            + _pictures_section(run_dir, data_root) + "</section>")


def _comparison_section(run_dirs: list[Path]) -> str:
    evaluated, notes = [], []
    for run_dir in run_dirs:
        try:
            evaluated.append(read_scores(run_dir))
        except RunError as exc:
            notes.append(_note(f"Not in the table: {exc}"))
    rows = comparison_rows(evaluated)
    header = ["data set", "model", "sampler", *[title for _, title, _ in COLUMNS], "recon MSE ↓",
              "NLL gray ↓"]
    body = [[r["dataset"], r["model"], r["sampler"], *[r[key] for key, _, _ in COLUMNS],
             r.get("pixel_mse", ""), r.get("nll_grayscale") or ""] for r in rows]
    return "<h2>Comparison</h2>" + (table(header, body) if rows else "") + "".join(notes)


def report_html(run_dirs: list[Path], data_root: Any = None) -> str:
    """The whole self-contained page for one or more runs."""
    run_dirs = [Path(r) for r in run_dirs]
    if not run_dirs:
        raise RunError("give at least one run folder")
    names = ", ".join(html.escape(str(r)) for r in run_dirs)
    comparison = _comparison_section(run_dirs) if len(run_dirs) > 1 else ""
    sections = "".join(run_section(r, data_root) for r in run_dirs)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>aegen report: {names}</title>'
            f"<style>{STYLE}</style></head><body>"
            f"<h1>aegen report</h1><p>{names} &middot; aegen {__version__}</p>"
            f'{comparison}<div class="runs">{sections}</div></body></html>\n')


def write_report(run_dirs: list[Path], out: Path, data_root: Any = None) -> Path:
    """Write the report atomically to out and return its path."""
    write_atomic(out, report_html(run_dirs, data_root).encode("utf-8"))
    return out


__all__ = ["report_html", "write_report", "run_section", "png_data_url", "table"]
