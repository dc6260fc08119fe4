"""Every list a user sees comes from its registry: a model or sampler registered once shows up in
the help, `aegen models`, the docs and the report; every evaluation setting is defined once, in
EvalSettings, and the flags, their help and aegen.evaluate's arguments follow from it."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from aegen.cli import build_parser, main
from aegen.errors import ConfigError
from aegen.experiments import EXPERIMENTS
from aegen.latent.samplers import SAMPLERS, GaussianSampler, make_sampler
from aegen.models import PRESETS
from aegen.settings.evaluate import SETTINGS, WEIGHTS, EvalSettings, eval_settings_from
from aegen.views import report

MODEL = "tiny-test-vq"
SAMPLER = "tiny-test-sampler"


@pytest.fixture
def throwaway_model(monkeypatch):
    """A model registered under a new name: vq-vae's preset (discrete codes) copied."""
    entry = dataclasses.replace(PRESETS["vq-vae"], description="a throwaway model of this test")
    monkeypatch.setitem(PRESETS, MODEL, entry)
    return entry


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def flag(command: argparse.ArgumentParser, option: str) -> argparse.Action | None:
    return next((a for a in command._actions if option in a.option_strings), None)


def help_text(capsys, monkeypatch, *argv: str) -> str:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: argparse wraps at hyphens
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_a_registered_model_is_in_train_help_the_model_list_and_the_report(
    throwaway_model, capsys, monkeypatch
):
    assert f"or {MODEL} (see `aegen models`)" in help_text(capsys, monkeypatch, "train")
    status = main(["models"])
    out = capsys.readouterr().out
    assert status == 0 and MODEL in out and "a throwaway model of this test" in out
    # The report names the samplers an unevaluated run would add from the model's registry
    # entry: vq-vae's codes are discrete, so only its prior (an unknown model: all three).
    assert report._standard_samplers(SimpleNamespace(model=MODEL)) == ["prior"]
    assert len(report._standard_samplers(SimpleNamespace(model="no-such-model"))) == 3


def test_a_registered_model_and_sampler_are_in_the_docs_reference(throwaway_model, monkeypatch):
    reference = pytest.importorskip("aegen.views.reference")
    monkeypatch.setitem(SAMPLERS, SAMPLER, GaussianSampler)
    assert MODEL in reference.model_reference()
    assert f"[`{MODEL}`]" in reference.model_index({name: f"{name}.md" for name in PRESETS})
    assert f"or {MODEL} (see" in reference.command_reference(build_parser())["train"]
    assert f"| `{SAMPLER}` |" in reference.sampler_reference()
    assert (
        f"two-stage, {SAMPLER}, or numbered"
        in reference.command_reference(build_parser())["evaluate"]
    )


def test_train_help_lists_every_registered_model(capsys, monkeypatch):
    text = help_text(capsys, monkeypatch, "train")
    assert all(name in text for name in PRESETS) and "or ldm (see" in text


def test_a_registered_sampler_is_in_the_help_and_the_unknown_sampler_message(capsys, monkeypatch):
    monkeypatch.setitem(SAMPLERS, SAMPLER, GaussianSampler)
    for command in ("sample", "evaluate"):
        assert f"two-stage, {SAMPLER}, or numbered" in help_text(capsys, monkeypatch, command)
    with pytest.raises(ConfigError, match=SAMPLER):
        make_sampler("no-such-sampler", 2)
    assert make_sampler(SAMPLER, 2).latent_dim == 2


def test_experiment_choices_are_the_registry():
    experiment = subcommands(build_parser())["experiment"]
    name = next(a for a in experiment._actions if a.dest == "name")
    assert tuple(name.choices) == EXPERIMENTS


def test_data_root_has_one_help_text_on_every_command_that_takes_it():
    helps = {
        name: action.help
        for name, command in subcommands(build_parser()).items()
        if (action := flag(command, "--data-root")) is not None
    }
    takes_it = {"train", "sample", "reconstruct", "encode", "pictures", "evaluate", "score"}
    assert takes_it | {"experiment", "explore"} == set(helps)
    assert set(helps.values()) == {SETTINGS["data_root"].metadata["meaning"]}


def test_weights_choices_are_one_constant_on_every_command():
    commands = subcommands(build_parser())
    choices = {
        name: tuple(action.choices)
        for name, command in commands.items()
        if (action := flag(command, "--weights")) is not None and action.choices
    }
    assert set(choices) == {"sample", "reconstruct", "encode", "evaluate", "score", "export"}
    assert set(choices.values()) == {WEIGHTS}


def test_evaluate_flags_are_the_eval_settings_and_their_help_says_the_defaults(capsys, monkeypatch):
    args = build_parser().parse_args(["evaluate", "run"])
    assert EvalSettings(**{name: getattr(args, name) for name in SETTINGS}) == EvalSettings()
    evaluate = subcommands(build_parser())["evaluate"]
    flags = {
        spec.metadata["flag"] or "--" + name.replace("_", "-") for name, spec in SETTINGS.items()
    }
    assert set(evaluate._option_string_actions) == flags | {"-h", "--help"}
    text = " ".join(help_text(capsys, monkeypatch, "evaluate").split())
    for spec in SETTINGS.values():
        meaning, unset = spec.metadata["meaning"], spec.metadata["unset"]
        if spec.default is not None:
            assert f"{meaning} (default {spec.default})" in text
        else:
            assert f"{meaning} (default: {unset}" in text if unset else meaning in text


def test_evaluate_takes_the_settings_by_name_and_checks_them():
    chosen = eval_settings_from(["prior"], {"nll_k": 100, "data_root": Path("data")})
    assert chosen == EvalSettings(samplers=["prior"], nll_k=100, data_root="data")
    with pytest.raises(ConfigError, match="unknown setting 'n_sample' \\(did you mean"):
        eval_settings_from(None, {"n_sample": 10})
    with pytest.raises(ConfigError, match="must be between 1 and 1024"):
        eval_settings_from(EvalSettings(), {"threads": 0})
    with pytest.raises(ConfigError, match="unknown weights 'first'"):
        eval_settings_from(None, {"weights": "first"})


def test_aegen_help_loads_no_torch():
    code = (
        "import sys\nfrom aegen.cli import main\n"
        "for argv in (['--help'], ['compare', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stderr.strip() == "False"
