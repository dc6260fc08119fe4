"""FusedAdam: torch.optim.Adam(fused=True)'s updates, bit for bit, and its state_dict layout, so
checkpoints written before aegen had its own Adam still resume."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from aegen.runs.checkpoint import load_checkpoint, save_checkpoint
from aegen.training.adam import FusedAdam


def _network(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))


def _train(network: torch.nn.Module, optimizer, steps: int, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 6, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        network(x).square().mean().backward()
        optimizer.step()


def _reference(network: torch.nn.Module) -> torch.optim.Adam:
    return torch.optim.Adam(
        network.parameters(), lr=3e-3, betas=(0.5, 0.99), weight_decay=1e-2, fused=True
    )


def _ours(network: torch.nn.Module) -> FusedAdam:
    return FusedAdam(network.parameters(), lr=3e-3, betas=(0.5, 0.99), weight_decay=1e-2)


def test_updates_are_torch_fused_adams_bit_for_bit():
    theirs, ours = _network(), _network()
    _train(theirs, _reference(theirs), 25)
    _train(ours, _ours(ours), 25)
    for a, b in zip(theirs.parameters(), ours.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(_network().state_dict()["0.weight"], ours.state_dict()["0.weight"])


def test_a_parameter_without_gradient_is_left_alone():
    network = _network()
    optimizer = _ours(network)
    network[2].weight.requires_grad_(False)
    before = network[2].weight.clone()
    _train(network, optimizer, 3)
    assert torch.equal(network[2].weight, before)
    assert network[2].weight not in optimizer.state


@pytest.mark.parametrize("direction", ["torch to aegen", "aegen to torch"])
def test_state_moves_between_torch_adam_and_fused_adam(direction):
    """Three steps with one optimizer, its state loaded into the other, three more: the same
    weights as six steps with torch's Adam alone."""
    whole = _network()
    whole_optimizer = _reference(whole)
    _train(whole, whole_optimizer, 3, seed=1)
    _train(whole, whole_optimizer, 3, seed=2)

    moved = _network()
    first, second = (_reference, _ours) if direction == "torch to aegen" else (_ours, _reference)
    before = first(moved)
    _train(moved, before, 3, seed=1)
    after = second(moved)
    after.load_state_dict(before.state_dict())
    _train(moved, after, 3, seed=2)
    for a, b in zip(whole.parameters(), moved.parameters()):
        assert torch.equal(a, b)


def test_a_checkpoint_of_torch_adam_resumes_with_fused_adam(tmp_path):
    theirs, ours = _network(), _network()
    optimizer = _reference(theirs)
    _train(theirs, optimizer, 4)
    save_checkpoint(tmp_path, theirs, "net", {"model": optimizer}, epoch=0, history=[])
    fused = _ours(ours)
    assert load_checkpoint(tmp_path, ours, "net", {"model": fused})[0] == 0
    _train(theirs, optimizer, 2, seed=5)
    _train(ours, fused, 2, seed=5)
    for a, b in zip(theirs.parameters(), ours.parameters()):
        assert torch.equal(a, b)


def test_a_state_of_other_parameters_is_refused():
    optimizer = _ours(_network())
    other = torch.optim.Adam(torch.nn.Linear(2, 2).parameters(), fused=True)
    with pytest.raises(ValueError, match="other parameter groups"):
        optimizer.load_state_dict(other.state_dict())


def test_training_does_not_import_the_compiler(tmp_path):
    """The point of FusedAdam, aegen's own image grids and the lazy JPEG decoder: a whole
    training run (pictures included) and reading a PNG import neither torch._dynamo nor
    torchvision (over a second of a short run on a small CPU)."""
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    code = (
        "import sys\n"
        "from aegen.training.run import train\n"
        "from aegen.data.decode import decode_file\n"
        f"train('vae', 'mnist-5k', epochs=1, out={str(tmp_path / 'run')!r}, progress=False)\n"
        f"decode_file({str(tmp_path / 'a.png')!r}, None, None)\n"
        "print('torch._dynamo' in sys.modules, 'torchvision' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["False", "False"]
    assert (tmp_path / "run" / "samples.png").is_file()


def test_a_rate_held_in_a_tensor_updates_as_torchs_does():
    """A step recorded in a CUDA graph reads its rate from a tensor (the schedule refills it)."""
    theirs, ours = _network(), _network()
    rate = torch.tensor(3e-3)
    _train(theirs, torch.optim.Adam(theirs.parameters(), lr=rate, capturable=True, fused=True), 5)
    _train(ours, FusedAdam(ours.parameters(), lr=rate.clone(), capturable=True), 5)
    for a, b in zip(theirs.parameters(), ours.parameters()):
        assert torch.equal(a, b)


def _saved_state(**changes) -> dict:
    network = _network()
    optimizer = _ours(network)
    _train(network, optimizer, 2)
    state = optimizer.state_dict()
    for key, value in changes.items():
        if key in state["param_groups"][0]:
            state["param_groups"][0][key] = value
        else:
            state["state"][0][key] = value
    return state


def test_a_step_count_saved_as_a_plain_number_loads():
    """An older torch.optim state may hold its step count as a number."""
    network = _network()
    optimizer = _ours(network)
    optimizer.load_state_dict(_saved_state(step=2))
    assert optimizer.state[next(network.parameters())]["step"].dtype == torch.float32


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"exp_avg": torch.zeros(())}, "exp_avg is \\(\\), its parameter \\(5, 6\\)"),
        ({"exp_avg_sq": torch.zeros(5, 7)}, "exp_avg_sq is \\(5, 7\\)"),
        ({"step": torch.ones(3)}, "step count has shape"),
        ({"amsgrad": True}, "used amsgrad"),
    ],
)
def test_a_malformed_state_is_refused_and_changes_nothing(changes, message):
    network = _network()
    optimizer = _ours(network)
    _train(network, optimizer, 1)
    before = optimizer.state_dict()
    with pytest.raises(ValueError, match=message):
        optimizer.load_state_dict(_saved_state(**changes))
    after = optimizer.state_dict()
    assert after["param_groups"] == before["param_groups"]
    assert all(
        torch.equal(after["state"][i][k], v)
        for i, s in before["state"].items()
        for k, v in s.items()
    )


def test_a_state_naming_a_parameter_it_does_not_have_is_refused():
    state = _saved_state()
    state["state"][9] = state["state"][0]
    with pytest.raises(ValueError, match="parameter 9 of 4"):
        _ours(_network()).load_state_dict(state)
