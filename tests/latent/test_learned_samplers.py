"""The learned densities on the code space: flow, diffusion and two-stage fit a known 2-d
distribution, condition on labels, save, reload to the same samples and refuse a damaged file."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

from aegen import load
from aegen.errors import ConfigError, RunError
from aegen.latent.samplers import make_sampler

LEARNED = ("flow", "diffusion", "two-stage")


def two_moons(n: int, seed: int) -> torch.Tensor:
    """Two interleaved half circles with a little noise: curved, two parts, no Gaussian."""
    generator = torch.Generator().manual_seed(seed)
    angle = torch.rand(n, generator=generator) * math.pi
    upper = torch.rand(n, generator=generator) < 0.5
    x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle))
    y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
    return torch.stack([x, y], 1) + 0.05 * torch.randn(n, 2, generator=generator)


def mmd(a: torch.Tensor, b: torch.Tensor, width: float = 0.2) -> float:
    """Squared maximum mean discrepancy with a Gaussian kernel (biased estimate)."""

    def kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.exp(-torch.cdist(x, y).pow(2) / (2 * width**2)).mean()

    return (kernel(a, a) + kernel(b, b) - 2 * kernel(a, b)).item()


def quick(name: str, latent_dim: int = 2, classes: int = 0, **changes):
    """A learned sampler with a shorter fit (the defaults are exercised by the slow tests)."""
    sampler = make_sampler(name, latent_dim, classes)
    steps = 3000 if name == "two-stage" else 1500  # the second VAE's gamma falls slowly
    sampler.settings = replace(sampler.settings, max_steps=steps, batch_size=256, **changes)
    return sampler


@pytest.mark.parametrize("name", LEARNED)
def test_learned_sampler_fits_two_moons_far_better_than_one_gaussian(name):
    codes, fresh = two_moons(4000, seed=0), two_moons(2000, seed=1)
    gaussian = make_sampler("gaussian", 2).fit(codes).sample(2000, torch.Generator().manual_seed(2))
    drawn = quick(name).fit(codes).sample(2000, torch.Generator().manual_seed(2))
    baseline, floor, distance = (
        mmd(gaussian, fresh),
        mmd(two_moons(2000, 3), fresh),
        mmd(drawn, fresh),
    )
    assert distance < baseline / 4, (name, distance, baseline, floor)


@pytest.mark.slow
@pytest.mark.parametrize("name", LEARNED)
def test_learned_sampler_with_its_defaults_fits_two_moons(name):
    codes, fresh = two_moons(8000, seed=0), two_moons(2000, seed=1)
    gaussian = make_sampler("gaussian", 2).fit(codes).sample(2000, torch.Generator().manual_seed(2))
    drawn = make_sampler(name, 2).fit(codes).sample(2000, torch.Generator().manual_seed(2))
    assert mmd(drawn, fresh) < mmd(gaussian, fresh) / 8


@pytest.mark.parametrize("name", LEARNED)
def test_conditional_sampler_draws_each_labels_own_cluster(name):
    """Codes of class c sit around (4c, 0): asked for a label, the sampler draws near its centre."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(3, (3000,), generator=generator)
    codes = torch.stack([4.0 * labels, torch.zeros(3000)], 1) + 0.3 * torch.randn(
        3000, 2, generator=generator
    )
    sampler = quick(name, classes=3).fit(codes, labels)
    assert sampler.conditional
    for label in range(3):
        drawn = sampler.sample(500, torch.Generator().manual_seed(1), torch.tensor(label))
        assert (drawn[:, 0] - 4.0 * label).abs().median() < 0.6, (name, label)
    with pytest.raises(ConfigError, match="needs one per sample"):
        sampler.sample(5, torch.Generator())


def test_fit_is_seeded_and_stops_early_on_held_out_codes():
    codes = torch.randn(3000, 3)  # already Gaussian: the fresh flow (the identity) is best
    first = quick("flow", 3).fit(codes)
    second = quick("flow", 3).fit(codes)
    assert first.fit_record["steps"] < 1500
    assert first.fit_record == {**second.fit_record, "seconds": first.fit_record["seconds"]}
    for key, value in first.state().items():
        assert torch.equal(value, second.state()[key]), key


def test_diffusion_steps_option_shares_the_fitted_network():
    sampler = make_sampler("diffusion-7", 4)
    assert sampler.steps == 7 and sampler.name == "diffusion-7"
    assert make_sampler("diffusion", 4).steps == 25
    for bad in ("diffusion-0", "gmm-0", "diffusion-100000", "diffusion-007"):
        with pytest.raises(ConfigError, match="whole number in 1..10000"):
            make_sampler(bad, 4)
    for bad in ("gmm-\u00b2", "diffusion-\u0663", "diffusion--3"):  # superscript, Arabic digit
        with pytest.raises(ConfigError, match="unknown sampler"):
            make_sampler(bad, 4)
    assert make_sampler("diffusion-25", 4).name == "diffusion"  # one name for one sampler
    assert make_sampler("gmm-10", 4).name == "gmm"
    with pytest.raises(ConfigError, match="did you mean 'two-stage'"):
        make_sampler("two_stage", 4)


def test_too_few_codes_are_refused():
    with pytest.raises(ConfigError, match="at least 20 codes"):
        make_sampler("flow", 2).fit(torch.randn(5, 2))


@pytest.fixture
def quick_fits(monkeypatch):
    """The learned samplers of a run fitted in a few hundred steps (the mechanics, not quality)."""
    from aegen.latent.diffusion import DiffusionSampler
    from aegen.latent.flow import FlowSampler
    from aegen.latent.two_stage import TwoStageSampler

    for kind in (FlowSampler, DiffusionSampler, TwoStageSampler):
        monkeypatch.setattr(kind, "settings", replace(kind.settings, max_steps=150))


def copied_run(trained_runs, tmp_path, model: str):
    """A copy of one of the shared trained runs that a test may write into."""
    import shutil

    run_dir = tmp_path / model
    shutil.copytree(trained_runs[model].run_dir, run_dir)
    return run_dir


@pytest.mark.parametrize("name", LEARNED)
def test_run_saves_learned_sampler_and_reloads_the_same_samples(
    trained_runs, tmp_path, quick_fits, name
):
    run_dir = copied_run(trained_runs, tmp_path, "vae")
    first = load(run_dir).sample(64, seed=5, sampler=name)
    assert (run_dir / f"sampler-{name}.safetensors").is_file()
    again = load(run_dir)
    assert torch.equal(again.sample(64, seed=5, sampler=name), first)
    assert not torch.equal(again.sample(64, seed=6, sampler=name), first)


def test_tampered_sampler_file_is_refused(trained_runs, tmp_path, quick_fits):
    run_dir = copied_run(trained_runs, tmp_path, "ae")
    load(run_dir).sample(8, sampler="flow")
    path = run_dir / "sampler-flow.safetensors"
    tensors = load_file(path)
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        metadata = handle.metadata()
    key = sorted(tensors)[-1]
    tensors[key] = tensors[key] + 0.01  # a plausible value, not the one written
    save_file(tensors, path, metadata)
    with pytest.raises(RunError, match="do not match the digest.*delete it"):
        load(run_dir).sample(8, sampler="flow")


def test_sampler_fitted_to_earlier_weights_is_fitted_again(trained_runs, tmp_path, quick_fits):
    """A run trained on (--resume) has new weights: its saved samplers are stale, not damaged."""
    from aegen.training.run import train

    run_dir = copied_run(trained_runs, tmp_path, "ae")
    before = load(run_dir).sample(16, seed=1, sampler="gaussian")
    stale = (run_dir / "sampler-gaussian.safetensors").read_bytes()
    trained = train("ae", "mnist-5k", epochs=3, out=run_dir, resume=True, progress=False)
    after = trained.sample(16, seed=1, sampler="gaussian")
    assert (run_dir / "sampler-gaussian.safetensors").read_bytes() != stale
    assert not torch.equal(before, after)
    assert torch.equal(load(run_dir).sample(16, seed=1, sampler="gaussian"), after)


def test_diffusion_n_samples_from_the_one_fitted_diffusion_network(
    trained_runs, tmp_path, quick_fits
):
    run_dir = copied_run(trained_runs, tmp_path, "ae")
    default = load(run_dir).sample(16, seed=0, sampler="diffusion")
    saved = (run_dir / "sampler-diffusion.safetensors").read_bytes()
    fewer = load(run_dir).sample(16, seed=0, sampler="diffusion-3")
    assert not (run_dir / "sampler-diffusion-3.safetensors").exists()
    assert (run_dir / "sampler-diffusion.safetensors").read_bytes() == saved  # not refitted
    assert not torch.equal(default, fewer)  # 3 coarse steps land elsewhere than 25


def test_learned_sampler_file_without_its_digest_is_refused(trained_runs, tmp_path, quick_fits):
    from safetensors import safe_open

    run_dir = copied_run(trained_runs, tmp_path, "ae")
    load(run_dir).sampler("two-stage")
    path = run_dir / "sampler-two-stage.safetensors"
    with safe_open(path, framework="pt") as handle:
        metadata = {k: v for k, v in handle.metadata().items() if k != "sha256"}
    save_file(load_file(path), path, metadata)
    with pytest.raises(RunError, match="do not match the digest"):
        load(run_dir).sample(4, sampler="two-stage")


def test_old_gaussian_file_without_digests_is_fitted_again(trained_runs, tmp_path):
    """Files written before the digests (gaussian, gmm) still open: they are refitted once."""
    run_dir = copied_run(trained_runs, tmp_path, "ae")
    expected = load(run_dir).sample(8, seed=2, sampler="gaussian")
    path = run_dir / "sampler-gaussian.safetensors"
    save_file(load_file(path), path, {"sampler": "gaussian", "model": "ae"})
    assert torch.equal(load(run_dir).sample(8, seed=2, sampler="gaussian"), expected)
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        assert {"sha256", "weights"} <= set(handle.metadata())


@pytest.fixture(scope="module")
def one_epoch_cvae(tmp_path_factory):
    from aegen.training.run import train

    return train("cvae", epochs=1, out=tmp_path_factory.mktemp("cvae"), progress=False)


@pytest.mark.parametrize(
    "label",
    [
        torch.tensor(12),
        torch.tensor(-1),
        torch.tensor([1, 2]),
        torch.tensor(1.5),
        torch.tensor(True),
    ],
)
def test_bad_label_tensors_are_one_clear_error(one_epoch_cvae, label):
    run = one_epoch_cvae
    with pytest.raises(ConfigError, match="class index"):
        run.sample(4, sampler="prior", label=label)
    assert run.sample(3, sampler="prior", label=torch.tensor([1, 2, 3])).shape == (3, 1, 28, 28)


def test_cli_samples_and_evaluates_with_learned_samplers(
    trained_runs, tmp_path, quick_fits, capsys, shared_data, monkeypatch
):
    import json

    import numpy as np

    from aegen.cli import main
    from aegen.scoring import scores
    from aegen.scoring.classifier import Classifier

    torch.manual_seed(0)
    untrained = Classifier().eval(), {"test_accuracy": None, "note": "untrained, for tests"}
    monkeypatch.setattr(scores, "judge", lambda *args: untrained)  # training one takes minutes

    run_dir = copied_run(trained_runs, tmp_path, "vae")
    out = tmp_path / "flow.npy"
    assert main(["sample", str(run_dir), "--sampler", "flow", "-n", "6", "--out", str(out)]) == 0
    assert np.load(out).shape == (6, 1, 28, 28)
    argv = ["evaluate", str(run_dir), "--n-samples", "200", "--nll-k", "2"]
    argv += ["--sampler", "two-stage", "--sampler", "diffusion-5", "--data-root", str(shared_data)]
    assert main(argv) == 0
    scores = json.loads((run_dir / "scores.json").read_text())
    assert list(scores["samplers"]) == ["two-stage", "diffusion-5"]
    assert scores["reconstructed_data"]["fd_aegen"] >= 0
    assert (run_dir / "samples-diffusion-5.png").is_file()
    status = main(["sample", str(run_dir), "--sampler", "flows"])
    assert status == 2 and "did you mean 'flow'" in capsys.readouterr().err


def test_flow_log_prob_is_the_density_in_the_codes_units():
    """On Gaussian codes N(3, 2^2) per dimension, the flow's log density matches the true one."""
    generator = torch.Generator().manual_seed(0)
    codes = 3 + 2 * torch.randn(4000, 2, generator=generator)
    flow = quick("flow").fit(codes)
    fresh = 3 + 2 * torch.randn(2000, 2, generator=generator)
    true = torch.distributions.Normal(3.0, 2.0).log_prob(fresh).sum(1)
    assert (flow.log_prob(fresh) - true).mean().abs() < 0.05
