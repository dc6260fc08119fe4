"""The table `aegen evaluate` and `aegen compare` print: every row a user needs to read a score
(real data, the floor, each sampler), numbers to three significant digits whatever their scale,
and a note where runs' scores do not compare."""

import math

from aegen.views.comparison import comparison_notes, comparison_rows, terminal_table
from aegen.views.score_table import run_table, significant


def test_significant_digits_keep_small_scores_apart():
    shown = [significant(v) for v in (0.0107, 0.0055, 0.0040)]
    assert shown == ["0.0107", "0.00550", "0.00400"]  # "0.01 / 0.01 / 0.00" before
    assert significant(89.6) == "89.6" and significant(1234.5) == "1,234"
    assert significant(-0.000312) == "-0.000312" and significant(0) == "0"
    assert significant(3e-7) == "3.00e-07" and significant(None) == significant(math.nan) == "—"
    assert significant(12) == "12" and significant(0.5) == "0.500"
    assert significant(float("inf")) == "∞" and significant("12") == significant(True) == "—"


def scores(fd: float, n: int = 1000) -> dict:
    return {
        "images": n,
        "fd_aegen": fd,
        "kid": fd / 1000,
        "kid_se": fd / 10_000,
        "precision": 0.5,
        "recall": 0.25,
        "label_entropy": 0.9,
        "confident_share": 0.75,
        "hf_ratio": 0.8,
    }


def metrics(model: str, n: int = 1000, reference: str = "mnist test split (10000 images)"):
    return {
        "run": f"runs/{model}",
        "model": model,
        "dataset": "mnist",
        "protocol": {"reference": reference, "samples_per_sampler": n, "judge": "trained-cnn"},
        "classifier": {
            "kind": "trained-cnn",
            "train_images": 5000,
            "version": 1,
            "test_accuracy": 0.99,
        },
        "reconstruction": {"pixel_mse": 0.01},
        "real_data": scores(2.5, n),
        "reconstructed_data": scores(9.75, n),
        "samplers": {"prior": scores(31.2, n), "gmm": scores(0.0107, n)},
    }


def test_the_run_table_has_real_data_floor_and_samplers_with_kid_and_its_error():
    table = run_table(metrics("vae"))
    lines = table.splitlines()
    assert lines[1].startswith("real data (training images)")
    assert lines[2].startswith("floor: their reconstructions")
    assert lines[3].startswith("prior") and lines[4].startswith("gmm")
    assert "KID" in lines[0] and "0.0312 ± 0.0031" in lines[3] and "0.0107" in lines[4]
    assert "1,000" in lines[1] and "compare only at the same n" in table


def test_runs_scored_alike_compare_without_a_note():
    runs = [metrics("vae"), metrics("ae")]
    assert comparison_notes(runs) == []
    rows = comparison_rows(runs)
    assert {row["group"] for row in rows} == {1}
    assert [row["model"] for row in rows].count("real data") == 1


def test_other_sample_counts_and_references_are_said_in_one_line_each():
    runs = [metrics("vae"), metrics("ae", n=2000)]
    (note,) = comparison_notes(runs)
    assert "1000, 2000" in note and "FD does not compare" in note
    runs = [metrics("vae"), metrics("ae", reference="the run's held-out images (180)")]
    (note,) = comparison_notes(runs)
    assert "2 different judges or references" in note
    rows = comparison_rows(runs)
    assert {row["group"] for row in rows} == {1, 2}
    assert terminal_table(rows, [note]).endswith(f"note: {note}\n")
