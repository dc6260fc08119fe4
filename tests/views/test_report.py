"""`aegen report`: one self-contained HTML page per run, several runs side by side."""

import base64
import json
import re
import shutil

import pytest
import torch

from aegen.cli import main
from aegen.views.report import report_html, table


@pytest.fixture
def unevaluated(trained_runs, tmp_path):
    """A copy of a trained run as `aegen train` left it (other tests evaluate the shared runs)."""

    def copy(name: str):
        target = tmp_path / f"unevaluated-{name}"
        shutil.copytree(trained_runs[name].run_dir, target)
        for path in [target / "scores.json", *target.glob("samples-*.png")]:
            path.unlink(missing_ok=True)
        return target

    return copy


def embedded_pngs(page: str) -> list[bytes]:
    return [
        base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    ]


def test_report_of_one_run_embeds_every_picture_and_nothing_external(unevaluated):
    page = report_html([unevaluated("ae")])
    images = embedded_pngs(page)
    # loss, reconstructions, latent, interpolations; no samples: the copy kept none
    assert len(images) == 4 and all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in images)
    assert not re.search(r'(src|href)="(?!data:)', page), "the page must not load any other file"
    assert "http://" not in page and "https://" not in page
    for text in ("ae on mnist-5k", "hidden_dims", "Not evaluated yet", "Not drawn yet: prior"):
        assert text in page


def folder_state(run_dir):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.iterdir()}


def test_report_shows_the_samples_a_run_saved_and_writes_nothing(trained_runs, tmp_path):
    run_dir = shutil.copytree(trained_runs["vae"].run_dir, tmp_path / "vae")
    (run_dir / "scores.json").unlink(missing_ok=True)
    for path in run_dir.glob("sampler-*.safetensors"):
        path.unlink()
    before = folder_state(run_dir)
    page = report_html([run_dir])
    assert folder_state(run_dir) == before  # no sampler fitted, no picture drawn into it
    saved = {p.name for p in run_dir.glob("samples-*.png")}
    assert saved and all(f"sampler {name[8:-4]}" in page for name in saved)
    assert (run_dir / "samples-gmm.png").read_bytes() in embedded_pngs(page)


def test_report_reuses_the_run_folders_pictures(trained_runs):
    run_dir = trained_runs["vae"].run_dir
    page = report_html([run_dir])
    assert (run_dir / "reconstructions.png").read_bytes() in embedded_pngs(page)


def test_report_names_the_command_that_draws_pictures_a_copied_run_lost(unevaluated):
    copy = unevaluated("ae")
    for picture in copy.glob("*.png"):
        picture.unlink()
    page = report_html([copy])
    assert not list(copy.glob("*.png")) and embedded_pngs(page) == []
    assert "Missing from the folder: loss.png" in page and f"aegen pictures {copy}" in page


def test_report_of_evaluated_runs_shows_scores_and_a_comparison(
    trained_runs, shared_data, tmp_path
):
    from aegen.scoring.classifier import Classifier
    from aegen.scoring.scores import score_run
    from aegen.training.run import load

    torch.manual_seed(0)
    judge = (Classifier().eval(), {"test_accuracy": None})
    runs = []
    for name in ("ae", "vae"):
        shutil.copytree(trained_runs[name].run_dir, tmp_path / name)
        score_run(load(tmp_path / name, shared_data), n_samples=200, nll_k=2, classifier=judge)
        runs.append(tmp_path / name)
    page = report_html(runs)
    assert page.count('class="run"') == 2 and "<h2>Comparison</h2>" in page
    assert "Bernoulli of binarised pixels" in page and "real data (training images)" in page
    assert "against the the" not in page and "KID" in page
    comparison = page.split("<h2>Comparison</h2>")[1].split('<div class="runs">')[0]
    # header, real data, then for ae and vae: the floor (reconstructions), three samplers
    assert comparison.count("<tr>") == 1 + 1 + 4 + 4 and "reconstructions (floor)" in page


def test_table_escapes_text_and_formats_numbers():
    html = table(["a<b"], [["<script>", 0.000123456, 1234567]])
    assert "<script>" not in html and "&lt;script&gt;" in html and "a&lt;b" in html
    assert "0.0001235" in html and "1,234,567" in html


def test_report_escapes_a_hostile_run_folder_name(trained_runs, tmp_path):
    # "/" cannot be part of one folder name, so the hostile string spans two path components
    run_dir = tmp_path / "<script>alert(1)<" / "script>"
    shutil.copytree(trained_runs["ae"].run_dir, run_dir)
    assert str(run_dir).endswith("<script>alert(1)</script>")
    page = report_html([run_dir])
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower() and "alert(1)</script>" not in page


def test_report_escapes_a_hostile_config_value(trained_runs, tmp_path):
    payload = '"><img src=x onerror=alert(1)>'
    run_dir = tmp_path / "hostile-config"
    shutil.copytree(trained_runs["ae"].run_dir, run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    config["aegen_version"] = payload
    (run_dir / "config.json").write_text(json.dumps(config))
    page = report_html([run_dir])
    assert payload not in page and "<img src=x" not in page
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page


def test_report_cli_writes_the_file(capsys, unevaluated, tmp_path):
    out = tmp_path / "both.html"
    status = main(["report", str(unevaluated("ae")), str(unevaluated("vae")), "--out", str(out)])
    page = out.read_text()
    assert status == 0 and page.startswith("<!DOCTYPE html>") and page.count('class="run"') == 2
    assert "Not in the table" in page  # the runs are not evaluated: said, not crashed


@pytest.mark.parametrize(
    "argv, message",
    [
        (["report", "no-such-run"], "no-such-run is not a folder"),
        (["report", "{ae}", "--out", "page.txt"], "choose a name ending in .html"),
    ],
)
def test_report_mistakes_get_one_line(capsys, trained_runs, argv, message):
    argv = [a.format(ae=trained_runs["ae"].run_dir) for a in argv]
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1
