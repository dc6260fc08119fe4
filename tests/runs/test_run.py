"""Run folders describe themselves, load without unpickling and sample the same as in memory."""

import json
import shutil

import pytest
import torch

from aegen.errors import ConfigError, RunError
from aegen.training.run import load, train

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", ["ae", "conv-ae", "vae"])
def test_run_folder_is_self_describing(trained_runs, name):
    run_dir = trained_runs[name].run_dir
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == name and config["format"] == 1
    assert config["data"] == {
        "dataset": "mnist-5k",
        "root": None,
        "image_size": None,
        "channels": None,
        "background": "white",
        "image_shape": [1, 28, 28],
        "classes": [str(d) for d in range(10)],
        "digest": "",
        "n_train": 4500,
        "n_val": 500,
    }
    assert config["train"]["lr"] == 1e-3 and config["train"]["batch_size"] == 128
    assert config["train"]["weight_decay"] == (0.0 if name == "vae" else 1e-5)
    lines = (run_dir / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    for picture in ("reconstructions", "samples", "latent", "loss", "samples-gmm"):
        assert (run_dir / f"{picture}.png").read_bytes().startswith(PNG)
    assert isinstance(json.loads((run_dir / "diagnosis.json").read_text())["findings"], list)


@pytest.mark.parametrize("name", ["ae", "conv-ae", "vae"])
def test_saved_model_loads_and_samples_the_same(trained_runs, name):
    trained = trained_runs[name]
    loaded = load(trained.run_dir)
    first = trained.sample(16, seed=5)
    assert first.shape == (16, 1, 28, 28) and 0 <= first.min() and first.max() <= 1
    assert torch.equal(loaded.sample(16, seed=5), first)
    assert not torch.equal(loaded.sample(16, seed=6), first)


def test_default_samplers_are_prior_for_vae_and_fitted_gaussian_for_ae(trained_runs):
    assert trained_runs["vae"].default_sampler == "prior"
    ae = trained_runs["ae"]
    assert ae.default_sampler == "gaussian"
    assert (ae.run_dir / "sampler-gaussian.safetensors").is_file()
    codes = ae.encode(ae.split("train").images)
    fitted = ae.sampler("gaussian")
    assert torch.allclose(fitted.mean, codes.mean(0), atol=1e-3 * codes.abs().max().item())


def test_encode_decode_reconstruct_shapes(trained_runs):
    vae = trained_runs["vae"]
    images = vae.split("val").images[:10]
    codes = vae.encode(images)
    assert codes.shape == (10, 20)
    assert vae.decode(codes).shape == (10, 1, 28, 28)
    assert torch.allclose(vae.reconstruct(images.float() / 255), vae.decode(codes), atol=1e-5)


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(4, 27, 27), r"images must have shape \(N, 28, 28\)"),
        (torch.full((2, 28, 28), 3.0), r"must lie in \[0, 1\]"),
    ],
)
def test_bad_images_get_a_clear_error(trained_runs, bad, message):
    with pytest.raises(ConfigError, match=message):
        trained_runs["ae"].encode(bad)


def test_codes_of_the_wrong_size_are_refused(trained_runs):
    with pytest.raises(ConfigError, match=r"codes must have shape \(N, 3\)"):
        trained_runs["ae"].decode(torch.zeros(2, 20))


def copy_run(trained_runs, name, tmp_path):
    return shutil.copytree(trained_runs[name].run_dir, tmp_path / name)


WEIGHT_FILES = [("model.safetensors", "last"), ("model-best.safetensors", "best")]


@pytest.mark.parametrize("name, weights", WEIGHT_FILES)
def test_weights_of_another_model_are_refused(trained_runs, tmp_path, name, weights):
    run_dir = copy_run(trained_runs, "ae", tmp_path)
    shutil.copy(trained_runs["vae"].run_dir / name, run_dir / name)
    with pytest.raises(RunError, match="holds a 'vae' model, not 'ae'"):
        load(run_dir, weights=weights)


def test_weights_with_wrong_shapes_are_refused(trained_runs, tmp_path):
    run_dir = copy_run(trained_runs, "vae", tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    config["model_config"]["latent_dim"] = 2
    (run_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match=r"tensor 'fc_mu.weight' has shape \(20, 400\)"):
        load(run_dir)


@pytest.mark.parametrize("name, weights", WEIGHT_FILES)
def test_a_pickle_posing_as_weights_is_refused_and_never_executed(
    trained_runs, tmp_path, malicious_pickle, name, weights
):
    run_dir = copy_run(trained_runs, "ae", tmp_path)
    target = tmp_path / "pwned"
    (run_dir / name).write_bytes(malicious_pickle(target))
    with pytest.raises(RunError, match="not a safetensors file"):
        load(run_dir, weights=weights)
    assert not target.exists()


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda d: (d / "config.json").unlink(), "not an aegen run folder"),
        (lambda d: (d / "config.json").write_text("{broken"), "not valid JSON"),
        (lambda d: (d / "config.json").write_text('{"format": 99}'), "incompatible aegen version"),
        (
            lambda d: [(d / f"model{kind}.safetensors").unlink() for kind in ("", "-best")],
            "missing; the run is incomplete",
        ),
    ],
)
def test_broken_run_folders_get_a_clear_error(trained_runs, tmp_path, mangle, message):
    run_dir = copy_run(trained_runs, "conv-ae", tmp_path)
    mangle(run_dir)
    with pytest.raises(RunError, match=message):
        load(run_dir)


def test_a_non_empty_folder_is_not_overwritten_without_resume(trained_runs, tmp_path):
    run_dir = copy_run(trained_runs, "ae", tmp_path)
    before = (run_dir / "model.safetensors").read_bytes()
    with pytest.raises(RunError, match="is not empty; add --resume"):
        train("ae", epochs=1, out=run_dir, progress=False)
    assert (run_dir / "model.safetensors").read_bytes() == before


def test_resume_refuses_a_run_of_another_model(trained_runs, tmp_path):
    run_dir = copy_run(trained_runs, "ae", tmp_path)
    with pytest.raises(RunError, match="holds a 'ae' run, not 'vae'"):
        train("vae", epochs=3, out=run_dir, resume=True, progress=False)


def test_the_malicious_pickle_used_above_really_writes_when_unpickled(tmp_path, malicious_pickle):
    import pickle

    target = tmp_path / "written"
    pickle.loads(malicious_pickle(target)).close()
    assert target.exists()


@pytest.mark.parametrize("name", ["conv-ae", "vae"])
def test_a_run_with_a_single_held_out_image_still_draws_its_pictures(name, tmp_path):
    train(name, epochs=1, val_fraction=0.0001, out=tmp_path / name, progress=False)
    assert (tmp_path / name / "latent.png").is_file() and (
        tmp_path / name / "samples.png"
    ).is_file()
