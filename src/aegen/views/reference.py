"""The documentation's reference pages, written from the registries as Markdown: one page per
command (from the argparse parser it is given, so this layer never imports the CLI), one per
model preset (aegen.models.PRESETS) and one of the latent samplers (aegen.latent.samplers).

docs/hooks.py puts them into the site at build time, so a command, option, model or sampler
added to its registry appears in the docs without a word typed twice.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Iterator
from typing import Any

from aegen.latent import samplers
from aegen.latent.samplers import DEFAULT_GMM_COMPONENTS, SAMPLERS
from aegen.models import PRESETS, Preset, build_model
from aegen.trained import standard_samplers


def cell(text: Any) -> str:
    """Text that stays inside one Markdown table cell: one line, its pipes and tags escaped
    outside code spans (in a code span a pipe stays as it is)."""
    parts = " ".join(str(text).split()).split("`")
    for index in range(0, len(parts), 2):  # the parts outside `code`
        parts[index] = parts[index].replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def first_line(doc: str | None) -> str:
    """The first paragraph of a docstring, as one line."""
    return " ".join((inspect.cleandoc(doc or "").split("\n\n") or [""])[0].split())


def prose(doc: str | None) -> str:
    """A module docstring as Markdown: a blank line before a list that follows a sentence."""
    lines: list[str] = []
    for line in inspect.cleandoc(doc or "").splitlines():
        if line.startswith("- ") and lines and lines[-1] and not lines[-1].startswith(("- ", " ")):
            lines.append("")
        lines.append(line)
    return "\n".join(lines)


def usage(parser: argparse.ArgumentParser) -> str:
    """The parser's usage lines without "usage: ", continuation lines indented to match."""
    text = parser.format_usage().strip()
    first, *rest = text.splitlines()
    indent = len("usage: ")
    return "\n".join([first[indent:], *(line[indent:] for line in rest)])


def yes(flag: bool) -> str:
    return "yes" if flag else "no"


def shown(value: Any) -> str:
    """A default as a user writes it after `--option KEY=` (JSON, tuples as lists)."""
    return json.dumps(list(value) if isinstance(value, tuple) else value)


# Commands ------------------------------------------------------------------------------------


def subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """name -> (one-line summary, parser) of each subcommand of parser, in their order."""
    found: dict[str, tuple[str, argparse.ArgumentParser]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                found[name] = (summaries.get(name, ""), sub)
    return found


def walk(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(name, summary, parser) of every command under parser, nested ones as "outer inner"."""
    for name, (summary, sub) in subcommands(parser).items():
        key = f"{prefix} {name}".strip()
        yield key, summary, sub
        yield from walk(sub, key)


def argument_help(action: argparse.Action) -> str:
    """An argument's help with argparse's %(default)s-style fields filled in."""
    text = action.help or ""
    if "%(" not in text:
        return text
    fields = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
    fields["choices"] = ", ".join(map(str, action.choices or []))
    return text % fields


def argument_name(action: argparse.Action) -> str:
    """How the argument is written: `MODEL`, or `-n N`, `--seed N`, `--resume`."""
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    if action.nargs == 0:
        value = ""
    elif isinstance(action.metavar, str):
        value = " " + action.metavar
    elif action.choices:
        value = " {" + ",".join(map(str, action.choices)) + "}"
    else:
        value = " " + action.dest.upper()
    return ", ".join(f"`{option}{value}`" for option in action.option_strings)


def argument_default(action: argparse.Action) -> str:
    """An argument's default where argparse holds one (flags and unset values: none)."""
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS) or action.required:
        return ""
    return f"`{action.default}`"


def command_page(title: str, summary: str, parser: argparse.ArgumentParser) -> str:
    """One command's page: its usage, description, every argument and its epilog."""
    lines = [f"# {title}", ""]
    if summary:
        lines += [f"*{summary}*", ""]
    lines += ["```text", usage(parser), "```", ""]
    if parser.description:
        lines += [" ".join(parser.description.split()), ""]
    arguments = [
        a
        for a in parser._actions
        if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
    ]
    if arguments:
        lines += [
            "| argument | meaning | default | choices |",
            "|---|---|---|---|",
        ]
        for action in arguments:
            choices = ", ".join(f"`{c}`" for c in action.choices or [])
            lines.append(
                f"| {argument_name(action)} | {cell(argument_help(action))} "
                f"| {argument_default(action)} | {choices} |"
            )
        lines.append("")
    inner = subcommands(parser)
    if inner:
        lines += ["| command | what it does |", "|---|---|"]
        lines += [f"| `{title} {name}` | {cell(text)} |" for name, (text, _) in inner.items()]
        lines.append("")
    if parser.epilog:
        lines += ["```text", parser.epilog.strip(), "```", ""]
    return "\n".join(lines)


def command_reference(parser: argparse.ArgumentParser) -> dict[str, str]:
    """One Markdown page per subcommand of parser (nested ones as "outer inner"), keyed by its
    name, in the parser's order."""
    program = parser.prog.split()[0]
    return {
        key: command_page(f"{program} {key}", summary, sub) for key, summary, sub in walk(parser)
    }


def command_index(parser: argparse.ArgumentParser, links: dict[str, str]) -> str:
    """The commands' index page: each command's summary, linked to its page (links: name ->
    relative URL of its page)."""
    program = parser.prog.split()[0]
    lines = [
        "# Commands",
        "",
        " ".join((parser.description or "").split()),
        "",
        f"Every command answers `{program} COMMAND --help` with the options below; each page "
        "here is written from the command line's own parser when the site is built.",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    for key, summary, _ in walk(parser):
        lines.append(f"| [`{program} {key}`]({links[key]}) | {cell(summary)} |")
    return "\n".join(lines) + "\n"


# Models --------------------------------------------------------------------------------------


def samplers_of(name: str) -> list[str]:
    """The sampler names a preset's runs accept."""
    model_class = PRESETS[name].model_class
    if not model_class.continuous_codes:
        return ["prior"]
    names = [*SAMPLERS, "gmm-K", "diffusion-N"]
    if model_class.solved_prior:
        names.append("prior-N")
    return names


def model_page(name: str, entry: Preset) -> str:
    """One preset's page: what it is, its class, optimizer defaults, samplers and options."""
    model = build_model(name)
    model_class = entry.model_class
    module = sys.modules[model_class.__module__]
    parameters = sum(p.numel() for p in model.parameters())
    own = f" with {', '.join(f'`{k}={shown(v)}`' for k, v in entry.defaults.items())}"
    lines = [
        f"# {name}",
        "",
        entry.description[0].upper() + entry.description[1:] + ".",
        "",
        "```bash",
        f"aegen train {name}",
        "```",
        "",
        f"| preset | `{name}` |",
        "|---|---|",
        f"| class | `{model_class.__module__}.{model_class.__name__}`"
        f"{own if entry.defaults else ''} |",
        f"| config | `{entry.config_class.__module__}.{entry.config_class.__name__}` |",
        f"| parameters (28x28 gray images) | {parameters:,d} |",
        f"| code | {model.latent_dim} numbers |",
        f"| optimizer | Adam, learning rate {model.default_lr:g}, weight decay "
        f"{model.default_weight_decay:g}, betas {model.adam_betas} |",
        f"| default sampler | `{model.default_sampler}` |",
        f"| samplers | {', '.join(f'`{s}`' for s in samplers_of(name))} |",
        f"| scored by `aegen evaluate` unless told | "
        f"{', '.join(f'`{s}`' for s in standard_samplers(model_class))} |",
        f"| conditional (`--label`) | {yes(model.conditional or model.prior_classes > 0)} |",
        f"| pixel likelihood (ELBO and NLL scored) | {yes(model.pixel_likelihood)} |",
        "",
        "## Options",
        "",
        f"Set with `aegen train {name} --option KEY=VALUE`, a `model_options` object in "
        f'`--config`, or `aegen.train("{name}", model_options={{...}})`; a run records them.',
        "",
        "| option | default | meaning |",
        "|---|---|---|",
    ]
    for option, default, meaning in entry.option_defaults():
        lines.append(f"| `{option}` | `{shown(default)}` | {cell(meaning)} |")
    doc = prose(module.__doc__)
    if doc:
        lines += ["", "## About", "", f"From `{model_class.__module__}`:", "", doc]
    return "\n".join(lines) + "\n"


def model_reference() -> dict[str, str]:
    """One Markdown page per model preset, keyed by its name, in the registry's order."""
    return {name: model_page(name, entry) for name, entry in PRESETS.items()}


def model_index(links: dict[str, str]) -> str:
    """The models' index page: each preset's description, linked to its page."""
    lines = [
        "# Models",
        "",
        "Every model preset in the registry (`aegen.models.PRESETS`, listed by `aegen models`);",
        "each page is written from it when the site is built.",
        "",
        "| model | what it is |",
        "|---|---|",
    ]
    for name, entry in PRESETS.items():
        lines.append(f"| [`{name}`]({links[name]}) | {cell(entry.description)} |")
    return "\n".join(lines) + "\n"


# Samplers ------------------------------------------------------------------------------------


def sampler_reference() -> str:
    """The samplers' page: what each registered sampler is, and the numbered variants."""
    solved = ", ".join(f"`{n}`" for n, e in PRESETS.items() if e.model_class.solved_prior)
    lines = [
        "# Samplers",
        "",
        prose(samplers.__doc__),
        "",
        "Name one with `aegen sample RUN --sampler NAME`, `aegen evaluate RUN --sampler NAME` or "
        '`run.sample(n, sampler="NAME")`. A fitted sampler is fitted once on the run\'s '
        "training codes and saved in the run folder as `sampler-NAME.safetensors`.",
        "",
        "| sampler | class | what it draws |",
        "|---|---|---|",
    ]
    for name, kind in SAMPLERS.items():
        lines.append(
            f"| `{name}` | `{kind.__module__}.{kind.__name__}` | {cell(first_line(kind.__doc__))} |"
        )
    lines += [
        f"| `gmm-K` | the mixture | K Gaussians (`gmm` is K = {DEFAULT_GMM_COMPONENTS}) |",
        "| `diffusion-N` | the diffusion sampler | the fitted `diffusion` network, N steps |",
        f"| `prior-N` | a learned prior | the prior of {solved} solved in N steps |",
        "",
    ]
    for name, kind in SAMPLERS.items():
        module = sys.modules[kind.__module__]
        if module is not samplers and module.__doc__:
            lines += [f"## {name}", "", prose(module.__doc__), ""]
    return "\n".join(lines)
