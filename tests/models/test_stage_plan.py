"""Stages that end when the stage is done: the autoencoder stage of vq-vae and ldm ends once its
held-out reconstruction settles (after its floor), the log says when and why, and a run resumed
on either side of that switch continues bit-exactly."""

from __future__ import annotations

import logging

import pytest
import torch

import aegen
from aegen.files.tensors import load_tensors
from aegen.models import build_model, stage_plan
from aegen.models.base import Stage, two_stages
from aegen.models.stage_plan import (
    cooldown_factor,
    ended_unsettled,
    plan_text,
    resolve,
    settled,
    switch_note,
)
from aegen.runs.folder import read_history
from aegen.training.run import train

SMALL = {"hidden_channels": [8, 16], "prior_width": 16, "prior_blocks": 1, "sampling_steps": 4}


def rows(values: list[float]) -> list[dict]:
    return [{"epoch": i + 1, "val_recon": v} for i, v in enumerate(values)]


def test_a_measure_settles_when_two_epochs_gain_less_than_one_percent():
    assert not settled([100.0, 90.0])  # too few epochs to tell
    assert not settled([100.0, 90.0, 80.0])
    assert settled([100.0, 99.5, 99.2])  # 0.8 % over two epochs
    assert not settled([100.0, 99.5, 98.9])  # 1.1 %
    assert settled([100.0, 101.0, 100.5])  # no gain at all
    assert not settled([100.0, 99.8, 130.0])  # a spike: wait until the loss is back
    assert settled([100.0, 99.8, 130.0, 99.9])


def test_the_autoencoder_stage_ends_at_the_first_settled_epoch_past_its_floor():
    planned = two_stages(20, 0.5, "settled", least_steps=40)  # floor: 4 epochs of 10 steps
    flat = rows([100.0, 99.9, 99.9, 99.9, 99.9, 99.9])
    assert [(s.first, s.last) for s in resolve(planned, flat[:3], 10)] == [(1, 10), (11, 20)]
    assert [(s.first, s.last) for s in resolve(planned, flat, 10)] == [(1, 4), (5, 20)]
    # Still improving: the stage runs to the epoch where the prior's share begins.
    improving = rows([100.0 * 0.9**i for i in range(20)])
    assert [(s.first, s.last) for s in resolve(planned, improving, 10)] == [(1, 10), (11, 20)]
    # The fixed split of runs recorded before the switch: the share alone.
    fixed = two_stages(20, 0.5, "fixed")
    assert [(s.first, s.last) for s in resolve(fixed, flat, 10)] == [(1, 10), (11, 20)]


def test_the_log_says_when_and_why_the_stage_switched():
    planned = two_stages(20, 0.5, "settled", least_steps=0)
    history = rows([100.0, 99.9, 99.9])
    resolved = resolve(planned, history, 25)
    note = switch_note(planned, resolved, 3, 25)
    assert note == (
        "the autoencoder stage ends after epoch 3 (75 steps): its held-out recon gained less "
        "than 1% over the last 2 epochs; the prior trains epochs 4-20"
    )
    assert switch_note(planned, resolved, 2, 25) is None
    assert "ends once its held-out recon settles, from epoch 3 on" in plan_text(planned, 25)
    assert ended_unsettled(planned, history, 25) == []


def test_a_stage_that_ran_out_of_epochs_while_improving_is_named():
    planned = two_stages(6, 0.5, "settled", least_steps=1000)
    history = rows([100.0, 80.0, 60.0, 50.0, 49.0, 48.0])
    (found,) = ended_unsettled(planned, history, 10)
    assert "ended at its last epoch (3, 30 steps, short of its floor of 1,000 steps)" in found
    note = switch_note(planned, resolve(planned, history, 10), 3, 10)
    assert note is not None and "reached its last epoch before its held-out recon settled" in note


def test_the_autoencoder_stage_cools_down_in_its_last_planned_epochs():
    autoencoder, prior = two_stages(20, 0.5, "settled")  # epochs 1-10, then 11-20
    factors = [cooldown_factor(autoencoder, epoch, False) for epoch in range(1, 11)]
    assert factors == [1.0] * 8 + [0.1, 0.1]  # 15 % of 10 epochs, rounded: the last 2
    assert all(cooldown_factor(prior, epoch, True) == 1.0 for epoch in range(11, 21))
    assert "from epoch 3 on; 9-10 at a tenth of the rate" in plan_text([autoencoder, prior], 25)
    # The fixed split of earlier versions keeps its rate throughout; one epoch has no cool-down.
    fixed = two_stages(20, 0.5, "fixed")[0]
    assert all(cooldown_factor(fixed, epoch, False) == 1.0 for epoch in range(1, 11))
    single = two_stages(2, 0.5, "settled")[0]
    assert single.epochs == 1 and cooldown_factor(single, 1, False) == 1.0


def test_grid_models_halve_their_batch_until_an_epoch_has_60_steps():
    model = build_model("ldm")
    sizes = {n: model.default_batch_size(n) for n in (54_000, 7_680, 4_500, 3_000, 1_544, 100)}
    assert sizes == {54_000: 128, 7_680: 128, 4_500: 64, 3_000: 32, 1_544: 16, 100: 16}


def test_every_grid_model_plans_a_settling_autoencoder_stage():
    for name, measure in (("vq-vae", "val_recon"), ("ldm", "val_mse")):
        first, prior = build_model(name).stages(10)
        assert first.settles == measure and first.least_steps == 500
        assert prior.groups == ("prior",) and prior.last == 10
    assert build_model("ldm").stages(1) == [Stage(("autoencoder", "prior"), 1, 1)]


@pytest.mark.parametrize("stop_after", [2, 3, 4])  # before, at and after the switch
def test_a_run_resumed_around_a_settled_switch_continues_bit_exactly(
    tmp_path, monkeypatch, caplog, stop_after
):
    # Any gain counts as settled: the autoencoder stage ends at its floor, epoch 3 of 6.
    monkeypatch.setattr(stage_plan, "SETTLE_GAIN", 10.0)
    options = {**SMALL, "autoencoder_steps": 1}
    quiet = {"progress": False, "val_fraction": 0.9, "threads": 1, "epochs": 6}
    with caplog.at_level(logging.INFO, logger="aegen"):
        train("ldm", "mnist-5k", out=tmp_path / "whole", model_options=options, **quiet)
    assert "the autoencoder stage ends after epoch 3" in caplog.text
    history = read_history(tmp_path / "whole")
    assert [row["stage"] for row in history] == [1, 1, 1, 2, 2, 2]
    # The stage's last planned epoch (3) cools down; the prior starts at the full rate.
    assert [row["lr"] for row in history] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-3, 1e-3, 1e-3])
    stop = [lambda run, epoch, metrics: aegen.STOP if epoch == stop_after else None]
    parts = tmp_path / "parts"
    train("ldm", "mnist-5k", out=parts, model_options=options, callbacks=stop, **quiet)
    train("ldm", "mnist-5k", out=parts, resume=True, **quiet)
    whole = load_tensors(tmp_path / "whole" / "checkpoint.safetensors")[0]
    done = load_tensors(parts / "checkpoint.safetensors")[0]
    assert whole.keys() == done.keys() and all(torch.equal(whole[k], done[k]) for k in whole)
