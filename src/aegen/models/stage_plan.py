"""A run's stages resolved against its history: where a stage that ends once its held-out
measure settles did end, and why.

The plan (Autoencoder.stages) fixes each stage's latest epoch; a stage that `settles` may end
earlier, and the next one then starts at once. The decision reads only the finished epochs'
validation numbers, so a resumed run resolves the same stages as the run it continues (bit-exact
resume needs nothing more than the history its checkpoint holds). A settling stage that hands
over to another cools down: its last planned epochs train at a tenth of the learning rate.
"""

from __future__ import annotations

import dataclasses
import math

from aegen.models.base import Stage

SETTLE_EPOCHS = 2  # epochs a settling measure is watched over
SETTLE_GAIN = 0.01  # the least relative gain over them that keeps the stage going
COOLDOWN_SHARE = 0.15  # of a settling stage's planned epochs, at its end, trained at ...
COOLDOWN_FACTOR = 0.1  # ... this share of the learning rate


def settled(values: list[float]) -> bool:
    """Whether the best of the last SETTLE_EPOCHS values gained less than SETTLE_GAIN (relative)
    on the best before them (lower is better), and the last value is within SETTLE_GAIN of the
    best of all: a stage never ends on an epoch that a spike of the loss has set back, since
    the next stage keeps the weights the last epoch left."""
    if len(values) <= SETTLE_EPOCHS:
        return False
    before, recent, best = min(values[:-SETTLE_EPOCHS]), min(values[-SETTLE_EPOCHS:]), min(values)
    little_gain = recent > before - SETTLE_GAIN * abs(before)
    back_at_best = values[-1] <= best + SETTLE_GAIN * abs(best)
    return little_gain and back_at_best


def floor_epoch(stage: Stage, first: int, steps_per_epoch: int) -> int:
    """The earliest epoch a settling stage that starts at `first` may end at."""
    by_steps = math.ceil(stage.least_steps / max(1, steps_per_epoch))
    return first - 1 + max(stage.least_epochs, by_steps, SETTLE_EPOCHS + 1)


def resolve(planned: list[Stage], history: list[dict], steps_per_epoch: int) -> list[Stage]:
    """The stages as the finished epochs in `history` (oldest first) decide them: a settling
    stage ends at the first epoch from its floor on whose measure has settled."""
    resolved: list[Stage] = []
    first = 1
    for i, stage in enumerate(planned):
        last = stage.last
        if stage.settles and i < len(planned) - 1:
            floor = floor_epoch(stage, first, steps_per_epoch)
            for epoch in range(floor, min(stage.last, len(history) + 1)):
                values = [row.get(stage.settles, math.inf) for row in history[first - 1 : epoch]]
                if settled(values):
                    last = epoch
                    break
        resolved.append(dataclasses.replace(stage, first=first, last=last))
        first = last + 1
    return resolved


def switch_note(
    planned: list[Stage], resolved: list[Stage], epoch: int, steps_per_epoch: int
) -> str | None:
    """One line for the log when a stage ends after `epoch` (None otherwise): when, after how
    many steps, why, and what trains next."""
    for i, stage in enumerate(resolved[:-1]):
        if stage.last != epoch:
            continue
        plan, after = planned[i], resolved[i + 1]
        steps = stage.epochs * steps_per_epoch
        if not plan.settles:
            why = "its share of the epochs is done (fixed split)"
        elif stage.last < plan.last:
            why = (
                f"its held-out {plan.settles.removeprefix('val_')} gained less than "
                f"{SETTLE_GAIN:.0%} over the last {SETTLE_EPOCHS} epochs"
            )
        else:
            why = (
                f"it reached its last epoch before its held-out "
                f"{plan.settles.removeprefix('val_')} settled (more --epochs give it more)"
            )
        span = f"{after.first}-{after.last}" if after.last > after.first else f"{after.first}"
        return (
            f"the {'+'.join(stage.groups)} stage ends after epoch {epoch} ({steps:,} steps): "
            f"{why}; the {'+'.join(after.groups)} trains epoch{'s' if after.epochs > 1 else ''} "
            f"{span}"
        )
    return None


def ended_unsettled(planned: list[Stage], history: list[dict], steps_per_epoch: int) -> list[str]:
    """The settling stages that ran to their last epoch with their measure still improving (or
    before their floor): one sentence each, for the run's diagnosis."""
    found = []
    resolved = resolve(planned, history, steps_per_epoch)
    for plan, stage in zip(planned[:-1], resolved[:-1]):
        if not plan.settles or stage.last < plan.last or len(history) < stage.last:
            continue
        values = [row.get(plan.settles, math.inf) for row in history[stage.first - 1 : stage.last]]
        floor = floor_epoch(plan, stage.first, steps_per_epoch)
        if settled(values) and floor <= stage.last:
            continue
        measure = plan.settles.removeprefix("val_")
        short = f", short of its floor of {plan.least_steps:,} steps" if floor > stage.last else ""
        found.append(
            f"the {'+'.join(stage.groups)} stage ended at its last epoch ({stage.last}, "
            f"{stage.epochs * steps_per_epoch:,} steps{short}) with its held-out {measure} "
            "still improving: more --epochs give it more"
        )
    return found


def plan_text(planned: list[Stage], steps_per_epoch: int) -> str:
    """The plan in words for the run's first line: "epochs 1-15 autoencoder (ends once its
    held-out recon settles, from epoch 4 on), 16-30 prior (or from where it ends)"."""
    parts = []
    for i, stage in enumerate(planned):
        span = f"{stage.first}-{stage.last}" if stage.last > stage.first else f"{stage.first}"
        part = f"{span} {'+'.join(stage.groups)}"
        if stage.settles and i < len(planned) - 1:
            floor = min(floor_epoch(stage, stage.first, steps_per_epoch), stage.last)
            measure = stage.settles.removeprefix("val_")
            cool, calm = cooldown_epochs(stage, last_stage=False), ""
            if cool:
                slow = f"{stage.last - cool + 1}-{stage.last}" if cool > 1 else f"{stage.last}"
                calm = f"; {slow} at a tenth of the rate"
            part += f" (ends once its held-out {measure} settles, from epoch {floor} on{calm})"
        elif i and planned[i - 1].settles:
            part += " (or from where that ends)"
        parts.append(part)
    return "epochs " + ", ".join(parts)


def cooldown_epochs(stage: Stage, last_stage: bool) -> int:
    """How many of a stage's last planned epochs train at COOLDOWN_FACTOR of the rate: 15 %
    (at least 1) for a settling stage that hands over to another (the autoencoder before its
    prior), none otherwise, nor for a stage of one epoch."""
    if not stage.settles or last_stage:
        return 0
    cool = max(1, round(COOLDOWN_SHARE * stage.epochs))
    return cool if stage.epochs > cool else 0


def cooldown_factor(stage: Stage, epoch: int, last_stage: bool) -> float:
    """The learning rate's factor in `epoch` of `stage`: the next stage freezes the weights this
    one hands over, so they should not be those of a noisy last step or of a spike (measured in
    docs/guide/two-stages.md)."""
    cool = cooldown_epochs(stage, last_stage)
    return COOLDOWN_FACTOR if cool and epoch > stage.last - cool else 1.0
