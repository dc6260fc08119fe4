"""ldm's samples in fewer network passes (issue #33, item 2): ways of solving its flow-matching
prior, scored side by side with the default before issue #33, 10 Heun steps guided throughout
(19 evaluations of the velocity, each two passes of the network: 38). Today's default is
ab2-5:g0.15-0.7 (8 passes).

For every run given and every way of solving: network passes per sample, GFLOP per sample
(torch's FlopCounterMode over the prior and the decoder), seconds per 1,000 samples, and
FD-aegen, precision and recall of N samples against the data set's test split. Every way draws
the same noise and labels (one seed), so the differences are the solver's; the default is also
drawn with a second seed, which shows how far FD-aegen moves by chance alone.

A way is SOLVER-STEPS[:gLO-HI]: euler (one evaluation a step), heun (two, its last step
Euler's: 2 STEPS - 1), midpoint (two), ab2 (Adams-Bashforth's two-step method: one evaluation
a step, the previous step's velocity reused; its first step Euler's); guidance at the given
scale only for evaluations whose time t lies in [LO, HI] (noise at t = 0, codes at t = 1), the
conditional velocity alone (one pass) elsewhere.

    AEGEN_DATA=../shared/data .venv/bin/python bench/ldm_sampling.py RUN_DIR ... -n 3000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from aegen.experiments.hardware import hardware
from aegen.models import code_denoiser, flow_matching
from aegen.trained import TrainedModel, load

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learned_samplers import Judge  # noqa: E402

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (codes, times)
WAYS = (  # both rounds of the measurement in bench/README.md, the default first
    "heun-10",
    "heun-5",
    "heun-3",
    "heun-3:g0-0.5",
    "heun-3:g0.2-0.5",
    "heun-2",
    "midpoint-2",
    "euler-4",
    "euler-5:g0-0.7",
    "ab2-4",
    "ab2-5:g0-0.5",
    "ab2-5:g0.15-0.7",
    "ab2-5:g0-0.7",
    "ab2-6:g0-0.4",
    "ab2-7:g0-0.2",
)


def euler(velocity: Velocity, x: torch.Tensor, steps: int) -> torch.Tensor:
    for i in range(steps):
        x = x + velocity(x, _times(x, i / steps)) / steps
    return x


def midpoint(velocity: Velocity, x: torch.Tensor, steps: int) -> torch.Tensor:
    for i in range(steps):
        t, h = i / steps, 1 / steps
        half = x + 0.5 * h * velocity(x, _times(x, t))
        x = x + h * velocity(half, _times(x, t + 0.5 * h))
    return x


def _times(x: torch.Tensor, t: float) -> torch.Tensor:
    return torch.full((len(x),), t)


# Heun's and Adams-Bashforth's are the ones ldm ships (models/flow_matching.py), measured as
# they run there; Euler's and the midpoint rule only here.
SOLVERS = {"euler": euler, "midpoint": midpoint, **flow_matching.SOLVERS}


def parse_way(way: str) -> tuple[str, int, tuple[float, float]]:
    """("heun", 3, (0.0, 0.7)) from "heun-3:g0-0.7"; no window: guidance everywhere."""
    solver_steps, _, window = way.partition(":g")
    solver, steps = solver_steps.rsplit("-", 1)
    low, high = (float(v) for v in window.split("-")) if window else (0.0, 1.0)
    return solver, int(steps), (low, high)


class CountedPrior:
    """A replacement for CodeDenoiser.sample that solves the way asked and counts passes."""

    def __init__(self, way: str):
        self.solver, self.steps, self.window = parse_way(way)
        self.passes = 0  # network passes per sample, counted on the last call

    def __call__(
        self, net, noise, labels, guidance, steps, path=None, interval=None, solver=None
    ) -> torch.Tensor:
        """The way's solver and window, whatever the run's own options say."""
        none = net.no_labels(len(noise), noise.device)
        wanted = none if labels is None or not net.classes else labels.long().to(noise.device)
        self.passes = 0

        def velocity(x: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
            t = float(times[0])
            guided = self.window[0] <= t <= self.window[1] and guidance != 1.0
            if not guided or labels is None:
                self.passes += 1
                return net(x, times, wanted)
            self.passes += 2
            both = net(torch.cat([x, x]), torch.cat([times, times]), torch.cat([wanted, none]))
            conditional, unconditional = both.chunk(2)
            return unconditional + guidance * (conditional - unconditional)

        return SOLVERS[self.solver](velocity, noise, self.steps)


def draw(run: TrainedModel, n: int, seed: int) -> tuple[torch.Tensor, float]:
    """n images and the seconds they took (prior and decoder)."""
    started = time.perf_counter()
    images = torch.cat(list(run.sample_in_chunks(n, seed=seed, sampler="prior")))
    return images, time.perf_counter() - started


def flops_per_sample(run: TrainedModel, count: int = 64) -> float:
    with FlopCounterMode(display=False) as counter:
        run.sample(count, seed=0, sampler="prior")
    return counter.get_total_flops() / count


def bench_run(run_dir: Path, ways: list[str], n: int) -> list[dict]:
    run = load(run_dir)
    judge = Judge(run)
    rows = []
    plain = code_denoiser.CodeDenoiser.sample
    try:
        for way in ways:
            prior = CountedPrior(way)
            code_denoiser.CodeDenoiser.sample = (  # type: ignore[method-assign]
                lambda net, *args, _prior=prior, **kwargs: _prior(net, *args, **kwargs)
            )
            seeds = (0, 1) if way == ways[0] else (0,)
            for seed in seeds:
                images, seconds = draw(run, n, seed)
                scores = judge.score(images)
                row = {
                    "run": str(run_dir),
                    "dataset": run.config.dataset,
                    "way": way,
                    "seed": seed,
                    "passes": prior.passes,
                    "gflop_per_sample": flops_per_sample(run) / 1e9,
                    "seconds_per_1000": seconds * 1000 / n,
                    "fd_aegen": scores["fd_aegen"],
                    "precision": scores["precision"],
                    "recall": scores["recall"],
                }
                rows.append(row)
                print(
                    f"  {way:14s} seed {seed}: {row['passes']:2d} passes "
                    f"{row['gflop_per_sample']:.2f} GFLOP  {row['seconds_per_1000']:.1f} s/1000  "
                    f"FD {row['fd_aegen']:.2f}  P {row['precision']:.3f}  "
                    f"R {row['recall']:.3f}",
                    flush=True,
                )
    finally:
        code_denoiser.CodeDenoiser.sample = plain  # type: ignore[method-assign]
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| data | way | seed | passes | GFLOP/sample | s/1000 | FD-aegen | vs default | P | R |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        base = next(r for r in rows if r["run"] == row["run"] and r["seed"] == 0)
        lines.append(
            f"| {row['dataset']} | {row['way']} | {row['seed']} | {row['passes']} | "
            f"{row['gflop_per_sample']:.2f} | {row['seconds_per_1000']:.1f} | "
            f"{row['fd_aegen']:.2f} | {row['fd_aegen'] / base['fd_aegen']:.3f} | "
            f"{row['precision']:.3f} | {row['recall']:.3f} |"
        )
    return "\n".join(lines)


def ways_arguments(description: str, ways: tuple[str, ...], json_name: str) -> argparse.Namespace:
    """The command line of a script that draws from ldm runs in several ways: the run folders,
    samples per way, the ways (the default first) and the JSON written."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("runs", nargs="+", type=Path, help="ldm run folders")
    parser.add_argument("-n", type=int, default=3000, help="samples per way (default 3000)")
    parser.add_argument("--ways", nargs="+", default=list(ways), help="the default first")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / json_name)
    return parser.parse_args()


def main() -> None:
    args = ways_arguments(__doc__.split("\n\n")[0], WAYS, "ldm-sampling-cpu.json")
    torch.manual_seed(0)
    rows: list[dict] = []
    for run_dir in args.runs:
        print(run_dir, flush=True)
        rows += bench_run(run_dir, args.ways, args.n)
        report = {"hardware": hardware(), "n": args.n, "rows": rows}
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
