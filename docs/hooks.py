"""MkDocs hooks: the pages written at build time, the front page from README.md and the
reference pages from aegen's registries.

One page per command (from `aegen.cli.build_parser()`), one per model preset
(`aegen.models.PRESETS`) and one of the samplers (`aegen.latent.samplers`), with the commands'
and models' pages added to the navigation under the index pages mkdocs.yml names. The Markdown
itself comes from `aegen.views.reference`, which the tests call too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

from aegen.cli import build_parser
from aegen.views.reference import (
    command_index,
    command_reference,
    model_index,
    model_reference,
    sampler_reference,
)

COMMANDS = "reference/commands"
MODELS = "reference/models"
SAMPLERS = "reference/samplers.md"

_pages: dict[str, str] = {}  # src_uri -> Markdown, made once per build in on_config
_sections: dict[str, list[dict[str, str]]] = {}  # an index page -> nav entries of its pages


def slug(name: str) -> str:
    return name.replace(" ", "-")


def front_page(readme: Path) -> str:
    """README.md as the site's home page: its links into docs/ made relative to docs/."""
    return readme.read_text(encoding="utf-8").replace("](docs/", "](")


def generated_pages(root: Path) -> tuple[dict[str, str], dict[str, list[dict[str, str]]]]:
    """(src_uri -> Markdown, index page -> nav entries) of every generated page; root is the
    project's folder (README.md's)."""
    parser = build_parser()
    commands = command_reference(parser)
    models = model_reference()
    pages = {f"{COMMANDS}/{slug(name)}.md": text for name, text in commands.items()}
    pages[f"{COMMANDS}/index.md"] = command_index(
        parser, {name: f"{slug(name)}.md" for name in commands}
    )
    pages |= {f"{MODELS}/{name}.md": text for name, text in models.items()}
    pages[f"{MODELS}/index.md"] = model_index({name: f"{name}.md" for name in models})
    pages[SAMPLERS] = sampler_reference()
    pages["index.md"] = front_page(root / "README.md")
    sections = {
        f"{COMMANDS}/index.md": [
            {f"aegen {name}": f"{COMMANDS}/{slug(name)}.md"} for name in commands
        ],
        f"{MODELS}/index.md": [{name: f"{MODELS}/{name}.md"} for name in models],
    }
    return pages, sections


def expand(nav: Any) -> Any:
    """The nav with each generated index page followed by its pages, in one section."""
    if isinstance(nav, list):
        return [expand(item) for item in nav]
    if isinstance(nav, dict):
        return {
            title: [target, *_sections[target]]
            if isinstance(target, str) and target in _sections
            else expand(target)
            for title, target in nav.items()
        }
    return nav


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    pages, sections = generated_pages(Path(config.config_file_path).parent)
    _pages.clear()
    _pages.update(pages)
    _sections.clear()
    _sections.update(sections)
    if config.nav is not None:
        config.nav = expand(config.nav)
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for src_uri, text in _pages.items():
        if files.get_file_from_path(src_uri) is not None:  # a hand-written page of that name
            raise ValueError(f"docs/{src_uri} is generated: remove the file of that name")
        files.append(File.generated(config, src_uri, content=text))
    return files
