"""Every training setting is defined once, in TrainSettings, and the CLI, the --config file,
aegen.train and the help all follow from it; the CLI explains itself."""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aegen.cli import build_parser, main, model_optimizer_defaults, setting_flag
from aegen.errors import ConfigError
from aegen.models import PRESETS, option_meanings
from aegen.runs.config import RunConfig
from aegen.settings.train import (
    RESUMABLE,
    SETTINGS,
    TrainSettings,
    merge_settings,
    settings_from,
    value_kind,
)
from aegen.training.run import train
from aegen.version import __version__


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_setting_has_one_train_flag_and_every_flag_is_a_setting_or_a_run_choice():
    train_parser = subcommands(build_parser())["train"]
    flags = {
        option: action.dest
        for action in train_parser._actions
        for option in action.option_strings
        if option.startswith("--")
    }
    for name in SETTINGS:
        assert flags.get(setting_flag(name)) == name, f"setting {name} has no flag"
    run_choices = {"--help", "--config", "--out", "--resume", "--quiet"}
    # A switch that is off by default also has its --no- form, for a resumed run to turn it off.
    off_forms = {
        "--no-" + setting_flag(n)[2:]
        for n, spec in SETTINGS.items()
        if value_kind(spec) is bool and not spec.default
    }
    assert {flags[f] for f in off_forms} == {"tensorboard"}
    assert set(flags) - {setting_flag(n) for n in SETTINGS} - off_forms == run_choices


def test_train_takes_a_settings_object_or_its_fields_by_name(tmp_path):
    assert (
        inspect.signature(train).parameters["settings"].annotation == "TrainSettings | str | None"
    )
    with pytest.raises(ConfigError, match="unknown setting 'epoch'.*did you mean 'epochs'"):
        train("ae", epoch=1, out=tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    typed = train("ae", TrainSettings(epochs=1, seed=3), out=tmp_path / "a", progress=False)
    named = train("ae", "mnist-5k", epochs=1, seed=3, out=tmp_path / "b", progress=False)
    assert typed.config == named.config and typed.config.settings.seed == 3
    for name, value in typed.model.state_dict().items():
        assert torch.equal(value, named.model.state_dict()[name])


def test_flag_defaults_are_the_settings_defaults_and_given_flags_win(tmp_path):
    args = build_parser().parse_args(["train", "ae"])
    given = {name: getattr(args, name) for name in SETTINGS}
    assert all(value is None for value in given.values())  # none given: the defaults apply
    assert settings_from(merge_settings({}, given)) == TrainSettings()
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"epochs": 3, "seed": 4}))
    args = build_parser().parse_args(["train", "ae", "--seed", "5", "--no-cuda-graphs"])
    merged = settings_from(
        merge_settings(json.loads(config.read_text()), {n: getattr(args, n) for n in SETTINGS})
    )
    assert (merged.epochs, merged.seed, merged.cuda_graphs) == (3, 5, False)


def test_the_same_bounds_hold_for_flags_files_and_the_api(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["train", "ae", "--val-fraction", "1.5"])
    assert "validation fraction must be between 0 and 1" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="validation fraction must be between 0 and 1"):
        settings_from({"val_fraction": 1.5})
    with pytest.raises(ConfigError, match="seed must be between 0 and 4294967295"):
        train("ae", seed=2**63, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_train_help_names_each_models_optimizer_defaults_and_ends_with_examples(
    capsys, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "300")  # argparse wraps (and splits at hyphens) to this width
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "0.0002 for vae-gan" in text and "1e-05 for ae, conv-ae;" in text
    assert text.rstrip().endswith(f"{RESUMABLE[-1]}.")
    assert "examples:" in text and "aegen train vae --option latent_dim=2" in text
    defaults = model_optimizer_defaults()
    assert defaults["vae-gan"]["lr"] == 2e-4 and defaults["ae"]["weight_decay"] == 1e-5


def test_every_command_has_a_description_and_every_option_a_help_text():
    for name, command in subcommands(build_parser()).items():
        assert command.description, f"aegen {name} has no description"
        for action in command._actions:
            assert action.help, f"aegen {name}: {action.option_strings or action.dest} has no help"


def test_version_is_written_once(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"aegen {__version__}"
    metadata = subprocess.run(
        [sys.executable, "-c", "import importlib.metadata as m; print(m.version('aegen'))"],
        capture_output=True,
        text=True,
    )
    assert metadata.stdout.strip() == __version__


def test_models_lists_every_option_with_its_default_and_meaning(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for entry in PRESETS.values():
        for option, default, meaning in option_meanings(entry.config_class):
            assert meaning, f"{entry.config_class.__name__}.{option} has no meaning"
            shown = json.dumps(list(default) if isinstance(default, tuple) else default)
            assert f"{option} = {shown}" in out and meaning in out
    assert "kl_weight = 1.0" in out and "importance_samples = 1" in out and "gamma = 1.0" in out


def test_a_run_records_every_setting_and_reads_them_back(trained_runs):
    config = json.loads((trained_runs["vae"].run_dir / "config.json").read_text())
    settings = RunConfig.from_json(Path("config.json"), config).settings
    assert settings.epochs == 2 and settings.lr == 1e-3 and settings.dataset == "mnist-5k"
    assert set(config["train"]) == {
        n for n, f in SETTINGS.items() if f.metadata["section"] == "train"
    }


def test_a_run_folder_of_aegen_0_1_still_reads(trained_runs, tmp_path):
    """Old folders: metrics.jsonl for the history, no cuda_graphs in config.json's train."""
    import shutil

    from run_files import plausible_scores

    from aegen.runs.folder import read_history, read_scores

    old = tmp_path / "old"
    shutil.copytree(trained_runs["ae"].run_dir, old)
    (old / "history.jsonl").rename(old / "metrics.jsonl")
    (old / "metrics.json").write_text(json.dumps(plausible_scores(old, "ae")))
    assert read_scores(old)["model"] == "ae"
    config = json.loads((old / "config.json").read_text())
    del config["train"]["cuda_graphs"]
    (old / "config.json").write_text(json.dumps(config))
    assert len(read_history(old)) == 2
    assert RunConfig.from_json(Path("config.json"), config).settings.cuda_graphs is True


def test_resume_refuses_a_changed_setting_and_takes_a_new_learning_rate(tmp_path):
    run_dir = tmp_path / "run"
    train("ae", epochs=1, out=run_dir, progress=False)
    with pytest.raises(ConfigError, match="--resume cannot change 'batch_size'"):
        train("ae", epochs=2, batch_size=64, out=run_dir, resume=True, progress=False)
    with pytest.raises(ConfigError, match="cannot change the model option 'latent_dim'"):
        train("ae", model_options={"latent_dim": 2}, out=run_dir, resume=True, progress=False)
    train("ae", out=run_dir, resume=True, progress=False)  # no epochs given: the recorded 1
    assert len((run_dir / "history.jsonl").read_text().splitlines()) == 1
    train("ae", epochs=2, lr=1e-4, batch_size=128, out=run_dir, resume=True, progress=False)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train"]["lr"] == 1e-4 and config["train"]["epochs"] == 2
    assert len((run_dir / "history.jsonl").read_text().splitlines()) == 2


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_seeded_start(tmp_path):
    """Resuming a run without a checkpoint builds the model from the run's seed, so it ends
    where an uninterrupted run ends."""
    from aegen.files.tensors import load_tensors

    train("ae", epochs=1, seed=3, out=tmp_path / "whole", progress=False)
    train("ae", epochs=1, seed=3, out=tmp_path / "killed", progress=False)
    for name in ("checkpoint.safetensors", "model.safetensors", "history.jsonl"):
        (tmp_path / "killed" / name).unlink()  # as if killed during epoch 1
    torch.manual_seed(12345)  # whatever the caller's generator holds must not matter
    train("ae", out=tmp_path / "killed", resume=True, progress=False)
    whole = load_tensors(tmp_path / "whole" / "model.safetensors")[0]
    resumed = load_tensors(tmp_path / "killed" / "model.safetensors")[0]
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
