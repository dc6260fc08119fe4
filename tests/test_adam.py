"""FusedAdam: torch.optim.Adam(fused=True)'s updates, bit for bit, and its state_dict layout, so
checkpoints written before aegen had its own Adam still resume."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from aegen.store.checkpoint import load_checkpoint, save_checkpoint
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
    """The point of FusedAdam and aegen's own image grids: a training run never imports
    torch._dynamo (over a second of a short run on a small CPU)."""
    code = (
        "import sys, torch\n"
        "from aegen.models import build_model\n"
        "from aegen.training.adam import FusedAdam\n"
        "from aegen.store.exports import image_grid_png\n"
        "model = build_model('vae')\n"
        "optimizer = FusedAdam(model.parameters(), lr=1e-3)\n"
        "x = torch.rand(4, 1, 28, 28)\n"
        "model.loss(x, None).loss.backward(); optimizer.step()\n"
        "image_grid_png(x, 2)\n"
        "print('torch._dynamo' in sys.modules, 'torchvision' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_rate_held_in_a_tensor_updates_as_the_same_rate_as_a_number():
    """A step recorded in a CUDA graph reads its rate from a tensor (the schedule refills it)."""
    as_number, as_tensor = _network(), _network()
    _train(as_number, FusedAdam(as_number.parameters(), lr=3e-3), 5)
    _train(as_tensor, FusedAdam(as_tensor.parameters(), lr=torch.tensor(3e-3), capturable=True), 5)
    for a, b in zip(as_number.parameters(), as_tensor.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
