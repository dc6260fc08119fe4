"""The CPU thread count: the usable cores (affinity, container quota, torchrun ranks), a tuner
that keeps whichever count trains faster right now, and --threads N that pins it."""

from __future__ import annotations

import json

import pytest
import torch

from aegen.training import threads
from aegen.training.run import train
from aegen.training.threads import ThreadTuner, thread_candidates, usable_cores

QUIET = {"progress": False, "val_fraction": 0.5, "device": "cpu"}


class FakeClock:
    """Wall and CPU clocks the test moves (CPU: the threads' share of their cores' time)."""

    def __init__(self):
        self.now = 0.0
        self.cpu = 0.0

    def __call__(self) -> float:
        return self.now


def tuner_on(clock: FakeClock, candidates=(1, 2)) -> ThreadTuner:
    return ThreadTuner(candidates, clock=clock, cpu_clock=lambda: clock.cpu)


def run_steps(tuner: ThreadTuner, clock: FakeClock, machine: dict, steps: int) -> list[int]:
    """Steps of 100 images, each as slow as the current count is on this machine
    ({count: (seconds per image, share of its cores' time)}); the counts used, in order."""
    used = []
    for _ in range(steps):
        count = tuner.current
        used.append(count)
        seconds, share = machine[count]
        clock.now += 100 * seconds
        clock.cpu += 100 * seconds * count * share
        tuner.step_done(100)
    return used


# Even free, two threads get 60 % of two cores' time (they idle while Python runs between
# torch's operations); beside a busy process less still, and every step takes far longer.
FREE = {1: (0.010, 1.0), 2: (0.006, 0.6)}
BUSY = {1: (0.011, 1.0), 2: (0.040, 0.35)}


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_tuner_moves_to_the_faster_count_and_follows_the_machine(restore_threads):
    clock = FakeClock()
    tuner = tuner_on(clock)
    assert tuner.chosen == 2  # starts where torch does: every core
    used = run_steps(tuner, clock, FREE, 4000)
    assert tuner.chosen == 2 and used.count(1) < 0.02 * len(used)  # tries are rare when free
    used = run_steps(tuner, clock, BUSY, 400)  # a busy process arrives
    assert tuner.chosen == 1 and used[-300:].count(2) < 30  # it left the slow count at once
    run_steps(tuner, clock, FREE, 2000)  # the process ended: back to both cores
    assert tuner.chosen == 2


def test_a_run_that_starts_beside_a_busy_process_drops_to_one_thread_in_a_window(
    restore_threads,
):
    clock = FakeClock()
    tuner = tuner_on(clock)
    used = run_steps(tuner, clock, BUSY, 60)  # steps of 4 s, windows of 0.5 s
    assert tuner.chosen == 1 and used.index(1) <= 2  # warm-up, one window, then the try


def test_epochs_shorter_than_a_window_add_up_to_windows(restore_threads):
    """`ae` on mnist-5k: epochs of 0.1-0.2 s, each followed by validation and saving that the
    tuner must not count; its windows span epochs, so it still leaves the slow count."""
    clock = FakeClock()
    tuner = tuner_on(clock)
    busy = {1: (0.0003, 1.0), 2: (0.001, 0.35)}  # steps of 0.03 s and 0.1 s
    used = []
    for _ in range(20):  # epochs of two steps, 0.2 s with two threads
        tuner.resume()
        used += run_steps(tuner, clock, busy, 2)
        tuner.pause()
        clock.now += 1.0  # validation, checkpoint: not steps
        clock.cpu += 0.1
    assert tuner.chosen == 1 and used[-10:] == [1] * 10


def test_a_tie_keeps_the_count_it_has(restore_threads):
    clock = FakeClock()
    tuner = tuner_on(clock)
    run_steps(tuner, clock, {1: (0.0098, 1.0), 2: (0.010, 0.7)}, 500)  # kept waiting, but
    assert tuner.chosen == 2  # one thread was only 2 % faster: within the margin


def test_one_candidate_is_never_tuned(restore_threads):
    clock = FakeClock()
    tuner = tuner_on(clock, (3,))
    assert not tuner.active and tuner.describe() == "3 threads"
    assert set(run_steps(tuner, clock, {3: (0.01, 0.3)}, 50)) == {3}


def test_usable_cores_read_the_affinity_the_quota_and_the_ranks(tmp_path, monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert usable_cores(tmp_path) == 8  # no cgroup files: the affinity alone
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(tmp_path) == 8  # no quota
    (tmp_path / "cpu.max").write_text("250000 100000\n")  # 2.5 CPUs' worth
    assert usable_cores(tmp_path) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun: the ranks share them
    assert usable_cores(tmp_path) == 1
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("400000")  # cgroup v1: 4 CPUs
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert usable_cores(tmp_path) == 2


def test_a_pinned_count_or_omp_num_threads_is_the_only_candidate(monkeypatch):
    assert thread_candidates(3) == (3,)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert thread_candidates(None) == (torch.get_num_threads(),)
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    assert thread_candidates(None) == (1, 4)
    monkeypatch.setattr(threads, "usable_cores", lambda: 1)
    assert thread_candidates(None) == (1,)


def test_threads_pin_the_count_are_recorded_and_leave_the_callers_count(tmp_path):
    before = torch.get_num_threads()
    seen = []
    train(
        "ae",
        epochs=1,
        out=tmp_path / "run",
        threads=1,
        callbacks=[lambda r, e, m: seen.append(torch.get_num_threads())],
        **QUIET,
    )
    assert seen == [1] and torch.get_num_threads() == before
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["threads"] == 1
    resumed = train("ae", epochs=2, out=tmp_path / "run", resume=True, threads=2, **QUIET)
    assert resumed.config.settings.threads == 2  # a resumed run may change it


def test_the_thread_count_changes_the_weights_by_float_rounding_at_most(tmp_path):
    """Another thread count may sum in another order (on the 2-core development machine the
    fully connected models came out bit-identical, on a 16-core one not): pin --threads for
    bit-exact resume; the results agree to rounding either way."""
    from aegen.files.tensors import load_tensors

    for count in (1, 2):
        train("vae", epochs=1, out=tmp_path / f"t{count}", threads=count, **QUIET)
    one = load_tensors(tmp_path / "t1" / "model.safetensors")[0]
    two = load_tensors(tmp_path / "t2" / "model.safetensors")[0]
    assert all(torch.allclose(one[k], two[k], rtol=1e-4, atol=1e-6) for k in one)
