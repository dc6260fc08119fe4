"""The line training logs after each epoch."""

from __future__ import annotations

from aegen.settings.train import TrainSettings

# Logged per epoch beside the losses, with no validation value (stage: a multi-stage model's).
CONTROLS = ("lr", "kl_weight", "stage")


def format_epoch(metrics: dict, settings: TrainSettings) -> str:
    """One log line per epoch: losses, the loss terms where there are any, the rate and KL
    weight where a schedule or warm-up moves them, and the time."""
    terms = "".join(
        f"  {k} {metrics[k]:.4g}/{metrics['val_' + k]:.4g}"
        for k in metrics
        if k not in ("epoch", "loss", "seconds", *CONTROLS) and not k.startswith("val_")
    )
    if settings.lr_schedule != "constant" and "lr" in metrics:
        terms += f"  lr {metrics['lr']:.3g}"
    if settings.kl_warmup and "kl_weight" in metrics:
        terms += f"  kl weight {metrics['kl_weight']:.3g}"
    return (
        f"epoch {metrics['epoch']}/{settings.epochs}  train {metrics['loss']:.4g}  "
        f"val {metrics['val_loss']:.4g}{terms}  ({metrics['seconds']:.1f}s)"
    )
