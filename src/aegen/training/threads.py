"""How many CPU threads a training step uses: the cores this process may run on, then whichever
of one thread or all of them is faster right now.

Why: torch's intra-op threads wait on each other at every one of a step's few hundred small
operations. Beside one busy process (a browser, an indexer, a second job) the scheduler
deschedules one of them now and then, and the rest spin until it is back: a VAE epoch that takes
0.75 s on two free cores took 3.5-4 s beside one busy Python loop, where one thread took 1.3 s
(bench/README.md). GNU OpenMP's passive waiting helped less (2.0-2.5 s) and cost the free machine
2x. So the tuner times the steps with the current count, tries the other count for one window
now and then, and keeps the faster.

Results: another count may sum in another order, so the weights can differ in the last bits
(the fully connected models came out bit-identical with 1 and 2 threads on the 2-core
development machine, the convolutional ones not; on a 16-core machine neither); `--threads N`
(or OMP_NUM_THREADS) pins the count, and with it bit-exact resume.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import torch

log = logging.getLogger("aegen")

WINDOW_SECONDS = 0.5  # a window of steps timed with one thread count
FIRST_PROBE = 4  # windows with fewer threads before trying more again ...
LAST_PROBE = 64  # ... doubling after each try that confirms the choice, up to this many; with
# every core the tuner tries fewer only this rarely, unless the threads are kept waiting
# Several threads that got less than this share of their cores' time in a window were kept
# waiting by another process: try fewer at once. The share is measured against the one seen
# when the last try confirmed them (even on a free machine the threads idle between torch's
# operations while Python runs; before any try, against all of it).
STARVED = 0.8
# How much faster (per image) the other count must have been to be chosen: fewer threads by
# 20 %, more by 5 %. On a free machine more threads are usually faster, and a noisy window
# must not talk the tuner out of them; beside a busy process one thread wins by 2-10x.
MARGIN_FEWER, MARGIN_MORE = 0.8, 0.95
SLOWDOWN = 1.5  # a window this much slower than the last one says the machine changed: try now


def usable_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: its CPU affinity, capped by a container's CPU quota
    (cgroup v2 cpu.max or v1 cpu.cfs_quota_us), shared among the ranks torchrun started on
    this machine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = _cgroup_quota(cgroup)
    if quota is not None:
        cores = min(cores or 1, max(1, math.ceil(quota)))
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, (cores or 1) // max(ranks, 1))


def _cgroup_quota(cgroup: Path) -> float | None:
    """CPUs' worth of time the container may use, or None where no quota is set."""
    try:
        text = (cgroup / "cpu.max").read_text().split()  # v2: "max 100000" or "200000 100000"
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:  # v1
        quota = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


class ThreadTuner:
    """Times windows of training steps (seconds per image) with the chosen thread count and
    sometimes one window with the other candidate; switches when the other was faster by the
    margin. With every core, it tries fewer threads when they were kept waiting (the process
    got under STARVED of their cores' time: another process is running) or a window turned much
    slower, else only every LAST_PROBE windows, so a free machine hardly pays for the tries.
    With fewer, it tries more after FIRST_PROBE windows, then ever more rarely while the choice
    holds. The first window of a run, which pays for warming up, is not counted. With one
    candidate (one core, or a pinned count) it does nothing."""

    def __init__(
        self,
        candidates: tuple[int, ...],
        clock=time.perf_counter,
        cpu_clock=time.process_time,
    ):
        self.candidates = tuple(dict.fromkeys(candidates))
        self.clock, self.cpu_clock = clock, cpu_clock
        self.chosen = self.candidates[-1]  # torch's own default: every usable core
        self.speed: dict[int, float] = {}  # seconds per image of the latest window of each count
        self.windows = -1  # the first window is a warm-up
        self.interval = FIRST_PROBE
        self.next_try = LAST_PROBE
        self._trying: int | None = None
        self._share = 1.0  # the chosen count's latest share of its cores' time
        self._usual_share = 1.0  # its share when the last try confirmed it
        self._images = 0
        self._started, self._cpu_started = clock(), cpu_clock()
        self._paused: tuple[float, float] | None = None  # a window's clocks so far, stopped

    @property
    def active(self) -> bool:
        return len(self.candidates) > 1

    def describe(self) -> str:
        """For the log: '1 thread', or 'threads: 1 or 2, chosen while training'."""
        if not self.active:
            return f"{self.chosen} thread{'s' if self.chosen > 1 else ''}"
        return f"threads: {' or '.join(map(str, self.candidates))}, chosen while training"

    @property
    def current(self) -> int:
        return self._trying if self._trying is not None else self.chosen

    def apply(self, count: int) -> None:
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)

    def restart(self) -> None:
        """Start a new window."""
        self._images, self._started, self._cpu_started = 0, self.clock(), self.cpu_clock()
        self._paused = None

    def pause(self) -> None:
        """Stop the window's clocks: what follows (validation, saving) is not training steps."""
        self._paused = (self.clock() - self._started, self.cpu_clock() - self._cpu_started)

    def resume(self) -> None:
        """Go on with the paused window, so that epochs shorter than a window (`ae` on 5,000
        images: 0.1 s) add up to whole windows instead of each starting an unfinished one."""
        if self._paused is None:
            self.restart()
            return
        wall, cpu = self._paused
        self._started, self._cpu_started = self.clock() - wall, self.cpu_clock() - cpu
        self._paused = None

    def step_done(self, images: int) -> None:
        """Count a finished step; at the end of a window, decide the next window's count."""
        if not self.active:
            return
        self._images += images
        elapsed = self.clock() - self._started
        if elapsed < WINDOW_SECONDS:
            return
        self.windows += 1
        if self.windows > 0:
            share = (self.cpu_clock() - self._cpu_started) / (elapsed * self.current)
            self._window_done(elapsed / self._images, share)
        self.apply(self.current)
        self.restart()

    def _window_done(self, seconds_per_image: float, cpu_share: float) -> None:
        if self._trying is not None:  # a try ended: keep the faster
            other, self._trying = self._trying, None
            self.speed[other] = seconds_per_image
            margin = MARGIN_FEWER if other < self.chosen else MARGIN_MORE
            if seconds_per_image < margin * self.speed[self.chosen]:
                log.info(
                    f"threads: {self.chosen} -> {other} (the steps took "
                    f"{1e6 * seconds_per_image:.3g} instead of "
                    f"{1e6 * self.speed[self.chosen]:.3g} ms per 1,000 images)"
                )
                self.chosen, self.interval, self._usual_share = other, FIRST_PROBE, 1.0
            else:
                self.interval = min(2 * self.interval, LAST_PROBE)
                self._usual_share = self._share
            most = self.chosen == max(self.candidates)
            self.next_try = self.windows + (LAST_PROBE if most else self.interval)
            return
        previous = self.speed.get(self.chosen)
        self.speed[self.chosen] = seconds_per_image
        slower = previous is not None and seconds_per_image > SLOWDOWN * previous
        self._share = cpu_share
        starved = self.chosen > min(self.candidates) and cpu_share < STARVED * self._usual_share
        if self.windows >= self.next_try or slower or starved:
            self._trying = next(c for c in self.candidates if c != self.chosen)


def thread_candidates(threads: int | None) -> tuple[int, ...]:
    """The counts to choose from: the pinned one (--threads N, or OMP_NUM_THREADS set), else
    one thread and every usable core."""
    if threads is not None:
        return (threads,)
    if os.environ.get("OMP_NUM_THREADS"):
        return (torch.get_num_threads(),)
    cores = usable_cores()
    return (1, cores) if cores > 1 else (1,)
