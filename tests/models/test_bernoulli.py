"""The Bernoulli likelihood's own softplus and BCE (models/bernoulli.py) against torch's."""

import pytest
import torch
from torch.nn import functional as F

from aegen.models.bernoulli import bernoulli_nll, softplus


def test_softplus_matches_torch_over_the_whole_range():
    logits = torch.cat([torch.linspace(-120, 120, 100_001), torch.tensor([0.0, -1e30, 1e30])])
    exact = F.softplus(logits.double())
    ours = softplus(logits)
    assert ours.dtype == torch.float32
    assert torch.isfinite(ours).all()
    # Within float32's rounding of the value, plus 1e-7 absolute: log(1 + e) for tiny e rounds
    # to 0 where log1p would keep e, which a sum over pixels cannot see.
    error = (ours.double() - exact).abs()
    assert (error <= 1e-7 + 2e-7 * exact).all()
    assert error.max() <= 2 * (F.softplus(logits).double() - exact).abs().max()


def test_bernoulli_nll_is_the_summed_bce_per_row():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 784, generator=generator) * 6
    x = torch.rand(4, 3, 784, generator=generator)
    expected = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    assert bernoulli_nll(logits, x).shape == (4, 3)
    torch.testing.assert_close(bernoulli_nll(logits, x), expected, rtol=1e-6, atol=1e-4)
    # a known value: l = 0 is p = 1/2 for every pixel, log 2 nats each
    assert bernoulli_nll(torch.zeros(1, 784), torch.rand(1, 784)).item() == pytest.approx(
        784 * 0.6931471805599453, rel=1e-6
    )


def test_bernoulli_nll_broadcasts_one_image_over_several_draws():
    logits = torch.randn(5, 2, 10)  # 5 draws for each of 2 images
    x = torch.rand(2, 10)
    expected = F.binary_cross_entropy_with_logits(
        logits, x.expand(5, -1, -1), reduction="none"
    ).sum(-1)
    torch.testing.assert_close(bernoulli_nll(logits, x), expected)


def test_bernoulli_nll_gradients_are_exact():
    generator = torch.Generator().manual_seed(1)
    logits = (torch.randn(3, 6, dtype=torch.float64, generator=generator) * 5).requires_grad_()
    x = torch.rand(6, dtype=torch.float64, generator=generator).requires_grad_()
    assert torch.autograd.gradcheck(bernoulli_nll, (logits, x))


def test_bernoulli_nll_gradient_matches_torch_in_float32():
    logits = (torch.randn(128, 784) * 4).requires_grad_()
    x = torch.rand(128, 784)
    bernoulli_nll(logits, x).sum().backward()
    ours, logits.grad = logits.grad, None
    F.binary_cross_entropy_with_logits(logits, x, reduction="sum").backward()
    torch.testing.assert_close(ours, logits.grad)


def test_saturated_logits_give_finite_losses_and_gradients():
    logits = torch.tensor([[-1e4, -100.0, 100.0, 1e4]], requires_grad=True)
    x = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    loss = bernoulli_nll(logits, x)
    loss.sum().backward()
    assert loss.item() == pytest.approx(200.0)  # the two wrong pixels, 100 nats each
    assert logits.grad.tolist() == [[0.0, -1.0, 1.0, 0.0]]


def test_half_precision_logits_are_scored_in_float32_with_gradients_in_their_dtype():
    logits = (torch.randn(2, 50) * 3).to(torch.bfloat16).requires_grad_()
    x = torch.rand(2, 50)
    loss = bernoulli_nll(logits, x)
    assert loss.dtype == torch.float32
    loss.sum().backward()
    assert logits.grad.dtype == torch.bfloat16
    expected = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none").sum(-1)
    torch.testing.assert_close(loss, expected)
