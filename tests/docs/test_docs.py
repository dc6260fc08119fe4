"""The documentation: `mkdocs build --strict` builds the site (a broken link, anchor or nav entry
fails it), the reference pages written from the registries name every command, model and
sampler, the README stays a front page, and the worked example of "Adding a model" trains."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aegen.cli import build_parser
from aegen.latent.samplers import SAMPLERS
from aegen.models import PRESETS, Preset
from aegen.views.reference import command_reference, model_reference, subcommands

ROOT = Path(__file__).resolve().parents[2]
DOCS_PACKAGES = (
    "mkdocs",
    "material",
    "mkdocstrings",
    "mkdocstrings_handlers.python",
    "mkdocs_jupyter",
)


def needs_mkdocs() -> None:
    for package in DOCS_PACKAGES:
        pytest.importorskip(
            package, reason=f"{package} is not installed: pip install -e '.[docs]' builds the site"
        )


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built from the project's mkdocs.yml, strictly."""
    needs_mkdocs()
    site = tmp_path_factory.mktemp("site")
    built = mkdocs_build(ROOT / "mkdocs.yml", site)
    assert built.returncode == 0, built.stdout + built.stderr
    return site


def page_text(path: Path) -> str:
    return re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8"))


def test_the_site_builds_strictly(site):
    assert (site / "index.html").is_file()
    assert (site / "tutorial" / "index.html").is_file()
    assert "aegen.train" in page_text(site / "reference" / "api" / "index.html")


def test_every_command_has_a_reference_page(site):
    commands = command_reference(build_parser())
    assert set(subcommands(build_parser())) <= set(commands)
    index = page_text(site / "reference" / "commands" / "index.html")
    for name in commands:
        page = site / "reference" / "commands" / name.replace(" ", "-") / "index.html"
        assert f"aegen {name}" in page_text(page), f"no reference page names aegen {name}"
        assert f"aegen {name}" in index


def test_every_command_option_is_on_its_page():
    pages = command_reference(build_parser())
    for name, parser in subcommands(build_parser()).items():
        for action in parser[1]._actions:
            for option in set(action.option_strings) - {"-h", "--help"}:
                assert f"`{option}" in pages[name], f"aegen {name}'s page lacks {option}"


def test_every_model_has_a_reference_page(site):
    index = page_text(site / "reference" / "models" / "index.html")
    for name, entry in PRESETS.items():
        page = page_text(site / "reference" / "models" / name / "index.html")
        assert f"aegen train {name}" in page
        for option, _, _ in entry.option_defaults():
            assert option in page, f"{name}'s page lacks its option {option}"
        assert name in index


def test_every_sampler_is_on_the_samplers_page(site):
    page = page_text(site / "reference" / "samplers" / "index.html")
    for name in SAMPLERS:
        assert name in page


def test_a_broken_link_or_a_missing_page_fails_the_build(tmp_path):
    needs_mkdocs()
    import yaml  # mkdocs brings it

    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text((ROOT / "README.md").read_text(encoding="utf-8"))
    docs = project / "docs"
    docs.mkdir()
    for path in (ROOT / "docs").iterdir():  # the pages and the hooks, without the pictures
        if path.is_file():
            (docs / path.name).write_bytes(path.read_bytes())
        elif path.name != "images":
            (docs / path.name).symlink_to(path, target_is_directory=True)
    (docs / "images").mkdir()
    for image in (ROOT / "docs" / "images").iterdir():
        (docs / "images" / image.name).write_bytes(b"")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config["nav"] += [{"Broken": "broken.md"}, {"Missing": "missing-page.md"}]
    (project / "mkdocs.yml").write_text(yaml.safe_dump(config))
    (docs / "broken.md").write_text("# Broken\n\n[a page that is not there](nowhere.md)\n")
    built = mkdocs_build(project / "mkdocs.yml", tmp_path / "site")
    output = built.stdout + built.stderr
    assert built.returncode != 0
    assert "nowhere.md" in output and "missing-page.md" in output, output


def test_the_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, re.DOTALL)
    (first_kind, main_job), (second_kind, tests) = blocks[:2]
    assert first_kind == second_kind == "bash"
    assert "aegen train" in main_job and "pytest" in tests
    for link in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (ROOT / link).exists(), f"the README links to {link}, which does not exist"


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.DOTALL)


def test_the_worked_example_of_adding_a_model_trains(tmp_path, monkeypatch):
    from aegen.training.run import train

    model_file, registry_line = python_blocks(ROOT / "docs" / "guide" / "adding-a-model.md")[:2]
    path = tmp_path / "dae.py"
    path.write_text(model_file)
    entries = eval("{" + registry_line + "}", {"Preset": Preset})  # the one line, as written
    ((name, entry),) = entries.items()
    module_name = re.findall(r'"([\w.]+):\w+"', registry_line)[0]  # aegen.models.dae
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module_name, module)  # as if the file were in models/
    spec.loader.exec_module(module)
    monkeypatch.setitem(PRESETS, name, entry)

    run = train(name, "mnist-5k", epochs=1, out=tmp_path / "run", progress=False)
    assert run.sample(4).shape == (4, 1, 28, 28)
    page = model_reference()[name]
    assert "noise" in page and "DenoisingAE" in page
