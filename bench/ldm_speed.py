"""ldm against its bound (issue #33, item 1): an epoch of each stage and 1,000 samples, each
timed and set beside the time its own convolutions take when run alone.

The bound of a piece of work is measured, not assumed: forward hooks record every convolution
it runs (the layer, its input's shape, whether a backward pass follows), and each distinct call
is then run alone, forward and (where the work had one) backward, the best of several tries,
times how often the work made it. What the bound leaves out is everything else the work does:
normalisations, activations, the loss, the optimizer, Python. ratio = time / bound; the FLOPs
(torch's FlopCounterMode) and the rate they imply are printed beside it.

Then `evaluate`'s phases on a run of those two epochs (its default samplers: prior, gaussian,
gmm), and a short training of the judge (the data set's classifier, which a first evaluation
trains and caches), each against the bound of op_bound.py: every matrix-class operation the
phase runs (convolutions, matrix products, the k-NN distances) run alone. A phase is timed in
one evaluation and recorded in another, of a copy of the run made before either (so that both
fit the samplers); the judge comes from the cache in both.

    AEGEN_DATA=../shared/data .venv/bin/python bench/ldm_speed.py [--dataset mnist-5k]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from op_bound import MatrixOps, best_time
from op_bound import bound_seconds as ops_bound
from op_bound import flops as ops_flops
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from aegen.data.datasets import load_dataset
from aegen.experiments.hardware import hardware
from aegen.models import build_model
from aegen.settings.train import TrainSettings
from aegen.training.trainer import Trainer

CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)
# layer, input shape, input grad, backward, input in channels_last
Call = tuple[nn.Module, tuple[int, ...], bool, bool, bool]


class ConvCalls:
    """Records every convolution a model runs while it is open: (layer, input shape, whether
    the input wants a gradient, whether the output does, i.e. a backward pass follows, and
    whether the input is laid out channels_last)."""

    def __init__(self, model: nn.Module):
        self.calls: Counter[Call] = Counter()
        self.handles = [
            layer.register_forward_hook(self._record)
            for layer in model.modules()
            if isinstance(layer, CONVOLUTIONS)
        ]

    def _record(self, layer: nn.Module, args: tuple, out: torch.Tensor) -> None:
        x = args[0]
        last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        self.calls[(layer, tuple(x.shape), x.requires_grad, out.requires_grad, last)] += 1

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def run_alone(layer: nn.Module, x: torch.Tensor, backward: bool) -> None:
    """One convolution, forward and, if asked, backward (into x and the layer's weights)."""
    if backward:
        out = layer(x)
        out.backward(torch.ones_like(out))
    else:
        with torch.no_grad():
            layer(x)


def bound_seconds(calls: Counter[Call]) -> float:
    """The seconds the recorded convolutions take run alone (best of several tries each)."""
    total = 0.0
    for (layer, shape, input_grad, backward, last), count in calls.items():
        layout = torch.channels_last if last else torch.contiguous_format
        x = torch.randn(shape).contiguous(memory_format=layout).requires_grad_(input_grad)
        run_alone(layer, x, backward)  # the first call picks the kernel
        total += count * best_time(lambda: run_alone(layer, x, backward))  # noqa: B023
        for p in layer.parameters():
            p.grad = None
    return total


def stage_epochs(dataset: str, threads: int) -> tuple[list[dict], list[Counter[Call]], int]:
    """Two epochs of ldm, the autoencoder's then the prior's (a fixed switch), with every
    convolution recorded per epoch; and the FLOPs of one training step of each stage."""
    data = load_dataset(dataset, "train")
    n_val = len(data) // 10
    model = build_model("ldm", {"stage_switch": "fixed", "prior_share": 0.5})
    settings = TrainSettings(epochs=2, threads=threads)
    trainer = Trainer(
        model,
        settings,
        data.images[n_val:],
        data.images[:n_val],
        data.labels[n_val:],
        data.labels[:n_val],
    )
    recorders = [ConvCalls(model)]

    def next_epoch(metrics: dict) -> None:
        recorders[-1].close()
        recorders.append(ConvCalls(model))

    history = trainer.fit(on_epoch_end=next_epoch, progress=False)
    recorders[-1].close()
    return history, [r.calls for r in recorders[:2]], trainer.steps_per_epoch


def counted_flops(work: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        work()
    return counter.get_total_flops()


def sampling(model: nn.Module, n: int) -> tuple[float, Counter[Call], int]:
    """Seconds for n samples through the prior and the decoder (the best of two), their
    convolutions, and their FLOPs."""
    from aegen.models.ldm import LatentDiffusion

    assert isinstance(model, LatentDiffusion)
    model.eval()

    def draw() -> None:
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            model.decode(model.solve_prior(n, generator))

    seconds = best_time(draw, 2)
    recorder = ConvCalls(model)
    draw()
    recorder.close()
    return seconds, recorder.calls, counted_flops(draw)


JUDGE_IMAGES = 15_000  # of the 400,000 a first evaluation's judge trains on: the same steps


def evaluate_phases(dataset: str, threads: int) -> list[dict]:
    """Time, then record, each phase of `evaluate` on a two-epoch ldm run of `dataset`, and a
    short training of the judge: rows of seconds, bound and GFLOP."""
    import shutil
    import tempfile
    from contextlib import contextmanager

    import aegen
    from aegen.scoring import classifier, scores

    root = Path(tempfile.mkdtemp(prefix="ldm-speed-"))
    options = {"stage_switch": "fixed", "prior_share": 0.5}
    aegen.train(
        "ldm",
        dataset,
        epochs=2,
        out=root / "timed",
        progress=False,
        threads=threads,
        model_options=options,
    )
    shutil.copytree(root / "timed", root / "recorded")
    seconds: Counter[str] = Counter()
    calls: dict[str, Counter] = {}
    recording = False

    @contextmanager
    def phase(what: str):  # evaluate's own phases, named without the model
        name = (
            what.split(": ", 1)[-1] if " / " not in what else "sampler " + what.split(" / ", 1)[1]
        )
        started = time.perf_counter()
        if recording:
            with MatrixOps() as ops:
                yield
            calls.setdefault(name, Counter()).update(ops.calls)
        else:
            yield
        seconds[name] += time.perf_counter() - started

    original = scores.phase
    scores.phase = phase
    try:
        started = time.perf_counter()
        aegen.evaluate(root / "timed")
        total = time.perf_counter() - started
        timed = dict(seconds)
        recording = True
        with MatrixOps() as whole:  # the phases' operations and those between them
            aegen.evaluate(root / "recorded")
    finally:
        scores.phase = original
    rows = [
        {
            "work": f"evaluate: {name}",
            "seconds": timed[name],
            "bound": ops_bound(calls[name]),
            "gflop": ops_flops(calls[name]) / 1e9,
        }
        for name in timed
    ]
    rows.append(
        {
            "work": "evaluate, whole",
            "seconds": total,
            "bound": ops_bound(whole.calls),
            "gflop": ops_flops(whole.calls) / 1e9,
        }
    )
    train = load_dataset(dataset, "train")
    recipe = classifier.Recipe(JUDGE_IMAGES, classifier.RECIPES[dataset].augmentation)
    started = time.perf_counter()
    classifier.train_classifier(train.images, train.labels, recipe, progress=False)
    judge_seconds = time.perf_counter() - started
    with MatrixOps() as ops:
        classifier.train_classifier(train.images, train.labels, recipe, progress=False)
    rows.append(
        {
            "work": f"judge training ({JUDGE_IMAGES:,d} images)",
            "seconds": judge_seconds,
            "bound": ops_bound(ops.calls),
            "gflop": ops_flops(ops.calls) / 1e9,
        }
    )
    shutil.rmtree(root)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("-n", type=int, default=1000, help="samples timed (default 1000)")
    parser.add_argument("--no-evaluate", action="store_true", help="only training and sampling")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "ldm-speed-cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    history, epoch_calls, steps = stage_epochs(args.dataset, args.threads)
    model = build_model("ldm")
    rows = []
    for name, metrics, calls in zip(("autoencoder epoch", "prior epoch"), history, epoch_calls):
        rows.append({"work": name, "seconds": metrics["seconds"], "bound": bound_seconds(calls)})
    seconds, calls, flops = sampling(model, args.n)
    rows.append(
        {"work": f"{args.n} samples", "seconds": seconds, "bound": bound_seconds(calls)}
        | {"gflop": flops / 1e9}
    )
    if not args.no_evaluate:
        rows += evaluate_phases(args.dataset, args.threads)
    print(f"ldm on {args.dataset}, {args.threads} threads, {steps} steps an epoch")
    print(
        "| work | seconds | bound (its convolutions or matrix operations alone) | ratio | GFLOP "
        "| GFLOP/s |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        gflop = row.get("gflop")
        rate = f"{gflop / row['seconds']:.1f}" if gflop else ""
        ratio = f"{row['seconds'] / row['bound']:.2f}" if row["bound"] > 0 else "(none)"
        print(
            f"| {row['work']} | {row['seconds']:.2f} | {row['bound']:.2f} | {ratio} | "
            f"{gflop or '':.6} | {rate} |"
        )
    report = {"hardware": hardware(), "dataset": args.dataset, "threads": args.threads}
    args.json.write_text(json.dumps(report | {"rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
