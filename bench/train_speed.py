"""How fast aegen trains, evaluates and samples, against the bound its matmuls set and its peers.

    .venv/bin/python bench/train_speed.py --data-root ../shared/data [--json FILE] [--device cuda]
        [--precision bf16]

Per model on full Fashion-MNIST (60,000 training images, batch 128, Adam 1e-3):
- epoch: seconds per training epoch = (best wall time of a 3-epoch run - best of a 1-epoch run) / 2,
  each a fresh `aegen train` process, so start-up cancels; the runs interleaved and repeated;
- run 1 / run 10: a whole 1- and 10-epoch run, process start to finished run folder (pictures
  included), and the peak memory of that process;
- eval: the loss on the 10,000 test images; sample: decoding 10,000 samples; nll: the VAE's
  importance-sampled NLL, k=1000 draws for each of the 10,000 test images;
- bound: the FLOPs of the same work (counted by torch's FlopCounterMode) divided by the matmul
  rate measured in this run on the VAE's own matmul shapes: batch 128 forward and backward for
  training, evaluation and sampling; the NLL's chunks of 4,096 decoded draws (forward only) for
  the NLL estimate.
pythae (if bench/setup_peers.sh made its venv) runs the same VAE in the same sitting.
--device cuda runs aegen's side on a GPU (runs, bounds, evaluation, sampling, NLL; "peak MiB"
stays the host's resident memory); pythae runs on the same device, and a "vae-eager" row times
the VAE with --no-cuda-graphs. --models picks some of ae, conv-ae, vae; --precision bf16 trains
aegen's models in bf16.
Also: how the epoch time grows with the number of images and the batch size, and whether
memory stays flat across epochs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from aegen.data.datasets import load_dataset
from aegen.data.pixels import to_model_range
from aegen.latent.likelihood import ROWS_PER_CHUNK
from aegen.models import build_model
from aegen.settings.train import TrainSettings
from aegen.training.device import resolve_device
from aegen.training.trainer import Trainer

HERE = Path(__file__).resolve().parent
# the peer venv bench/setup_peers.sh makes, or another Python that has pythae (PYTHAE_PYTHON)
PYTHAE = Path(os.environ.get("PYTHAE_PYTHON", HERE / ".venv-pythae" / "bin" / "python"))
MODELS = ("ae", "conv-ae", "vae")  # or those --models names
EAGER = "-eager"  # "vae-eager": the VAE on a GPU with --no-cuda-graphs, to show what they save
BATCH = 128


DEVICE = torch.device("cpu")  # set from --device in main()
PRECISION = "fp32"  # set from --precision in main()


def synchronize() -> None:
    """Wait for the GPU's queued work, so that a timer measures it (nothing to wait for on CPU)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def best_time(function, repeats: int) -> float:
    """The fastest of several timed calls (the machine is noisy; the minimum is the signal)."""
    best = float("inf")
    for _ in range(repeats):
        synchronize()
        started = time.perf_counter()
        function()
        synchronize()
        best = min(best, time.perf_counter() - started)
    return best


def matmul_rate(rows: int = BATCH, backward: bool = True) -> float:
    """FLOP/s of the VAE's matmuls with `rows` rows (forward, and backward's two matmuls per
    layer when asked), the best of several passes."""
    shapes = []
    for n_in, n_out in ((784, 400), (400, 20), (400, 20), (20, 400), (400, 784)):
        shapes.append((rows, n_in, n_out))
        if backward:
            shapes += [(rows, n_out, n_in), (n_out, rows, n_in)]
    operands = [
        (torch.randn(m, k, device=DEVICE), torch.randn(k, n, device=DEVICE)) for m, k, n in shapes
    ]
    flops = sum(2 * m * k * n for m, k, n in shapes)
    passes = max(1, 50 * BATCH // rows) * (20 if DEVICE.type == "cuda" else 1)

    def run():
        for _ in range(passes):
            for a, b in operands:
                torch.mm(a, b)

    return passes * flops / best_time(run, 7)


def train_step_flops(name: str) -> int:
    """FLOPs of one forward + backward pass at batch 128."""
    model = build_model(name)
    x = to_model_range(torch.randint(0, 256, (BATCH, 28, 28), dtype=torch.uint8), model.value_range)
    with FlopCounterMode(display=False) as counter:
        model.loss(x).loss.backward()
    return counter.get_total_flops()


def timed_process(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MiB) of one process."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{process.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024


def aegen_run(name: str, epochs: int, data_root: Path, out: Path) -> tuple[float, float]:
    eager = name.endswith(EAGER)
    argv = [
        sys.executable,
        "-m",
        "aegen",
        "train",
        name.removesuffix(EAGER),
        *(["--no-cuda-graphs"] * eager),
        "--dataset",
        "fashion-mnist",
        "--data-root",
        str(data_root),
        "--epochs",
        str(epochs),
        "--val-fraction",
        "0.00001",
        "--device",
        str(DEVICE),
        "--precision",
        PRECISION,
        "--quiet",
        "--out",
        str(out),
    ]
    return timed_process(argv)


def pythae_run(epochs: int, data_root: Path) -> tuple[float, float]:
    return timed_process(
        [
            str(PYTHAE),
            str(HERE / "peers" / "pythae_vae.py"),
            "train",
            "--epochs",
            str(epochs),
            "--data-root",
            str(data_root),
            "--device",
            DEVICE.type,
        ]
    )


def epoch_times(data_root: Path, repeats: int, work: Path, peers: bool) -> dict:
    """Per-epoch seconds by the start-up-cancelling method, interleaved, best of repeats."""
    results: dict[str, dict] = {}
    eager = ["vae" + EAGER] if DEVICE.type == "cuda" and "vae" in MODELS else []
    names = [*MODELS, *eager, *(["pythae-vae"] if peers else [])]
    for repeat in range(repeats):
        for name in names:
            runs = {}
            for epochs in (1, 3):
                if name == "pythae-vae":
                    runs[epochs] = pythae_run(epochs, data_root)
                else:
                    runs[epochs] = aegen_run(
                        name, epochs, data_root, work / f"{name}-{repeat}-{epochs}"
                    )
            entry = results.setdefault(name, {"runs_1": [], "runs_3": []})
            entry["runs_1"].append(runs[1][0])
            entry["runs_3"].append(runs[3][0])
            # Best of each, then the difference: a difference of two noisy times is noisier still.
            entry["run_1"] = min(entry["runs_1"])
            entry["run_3"] = min(entry["runs_3"])
            entry["epoch"] = (min(entry["runs_3"]) - entry["run_1"]) / 2
            entry["peak_mib_run_1"] = runs[1][1]
            print(
                f"  {name}: repeat {repeat + 1}: 1 epoch {runs[1][0]:.2f}s, 3 epochs {runs[3][0]:.2f}s",
                flush=True,
            )
    return results


def held_out_work(name: str, run_dir: Path, data_root: Path, nll_images: int) -> dict:
    """Seconds to evaluate the test loss, to sample 10,000 images and (VAE) to estimate the NLL."""
    import aegen
    from aegen.latent.likelihood import elbo_and_nll

    trained = aegen.load(run_dir, data_root)
    test = load_dataset("fashion-mnist", "test", data_root)
    trainer = Trainer(
        trained.model,
        TrainSettings(precision=PRECISION),
        test.images[:1],
        test.images,
        device=DEVICE,
    )
    model = trainer.model  # now on DEVICE, like the test images in the trainer
    codes = torch.randn(10_000, model.latent_dim, device=DEVICE)

    def sample():
        with torch.no_grad():
            model.decode(codes)

    out = {
        "eval": best_time(lambda: trainer.validation_loss(trainer.val_images), 3),
        "sample": best_time(sample, 3),
    }
    if name == "vae":
        images = test.images[:nll_images].unsqueeze(1).to(DEVICE).float() / 255
        seconds = best_time(lambda: elbo_and_nll(model, images, k=1000), 1)
        out["nll"] = seconds * len(test) / nll_images  # scaled to the full 10,000 test images
    return out


def decode_flops(name: str, n: int) -> int:
    """FLOPs of decoding n codes, counted on 1,000 and scaled (decoding is linear in n)."""
    model = build_model(name)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.decode(torch.randn(1000, model.latent_dim))
    return counter.get_total_flops() * n // 1000


def scaling(data_root: Path) -> dict:
    """Epoch seconds against images (5k/20k/60k) and batch size (64/128/512); RSS over epochs."""
    data = load_dataset("fashion-mnist", "train", data_root).images
    out: dict = {}
    for name in MODELS:
        model_results = out.setdefault(name, {"images": {}, "batch": {}})
        for n in (5_000, 20_000, 60_000):
            trainer = Trainer(
                build_model(name),
                TrainSettings(precision=PRECISION),
                data[:n],
                data[:1],
                device=DEVICE,
            )
            model_results["images"][n] = best_time(lambda t=trainer: t.train_epoch(1, False), 2)
        for batch in (64, 128, 512):
            trainer = Trainer(
                build_model(name),
                TrainSettings(batch_size=batch, precision=PRECISION),
                data,
                data[:1],
                device=DEVICE,
            )
            model_results["batch"][batch] = best_time(lambda t=trainer: t.train_epoch(1, False), 2)
    trainer = Trainer(
        build_model("vae"), TrainSettings(precision=PRECISION), data, data[:1], device=DEVICE
    )
    rss = []
    for epoch in range(1, 11):
        trainer.train_epoch(epoch, False)
        rss.append(
            int(Path("/proc/self/statm").read_text().split()[1])
            * os.sysconf("SC_PAGE_SIZE")
            / 2**20
        )
    out["vae_rss_mib_by_epoch"] = [round(r, 1) for r in rss]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-root", type=Path, default=Path(os.environ.get("AEGEN_DATA", "../shared/data"))
    )
    parser.add_argument("--json", type=Path, default=HERE / "results.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--nll-images",
        type=int,
        default=10_000,
        help="test images the NLL is timed on (the time is scaled to 10,000)",
    )
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu (default) or cuda: aegen's and pythae's runs, bounds and timings",
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16"),
        help="aegen's training precision (the NLL and sampling stay fp32)",
    )
    parser.add_argument("--models", default="ae,conv-ae,vae", help="comma-separated (default: all)")
    args = parser.parse_args()
    global DEVICE, PRECISION, MODELS
    DEVICE, PRECISION = resolve_device(args.device), args.precision
    MODELS = tuple(args.models.split(","))
    torch.set_flush_denormal(True)  # as aegen.train does, before torch starts threads
    data_root = args.data_root.resolve()
    peers = PYTHAE.exists()
    rate, nll_rate = matmul_rate(), matmul_rate(rows=ROWS_PER_CHUNK, backward=False)
    print(
        f"matmul rate on the VAE's shapes: {rate / 1e9:.1f} GFLOP/s at batch 128, "
        f"{nll_rate / 1e9:.1f} GFLOP/s on the NLL's {ROWS_PER_CHUNK}-row chunks",
        flush=True,
    )
    steps = -(-60_000 // BATCH)
    report = {
        "device": str(DEVICE),
        "precision": PRECISION,
        "gpu": torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else None,
        "matmul_gflops": rate / 1e9,
        "nll_matmul_gflops": nll_rate / 1e9,
        "results": {},
        "scaling": None,
    }

    def save() -> None:
        """Write what is measured so far (a long sitting cut short still leaves its numbers)."""
        args.json.write_text(json.dumps(report, indent=2))

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = report["results"] = epoch_times(data_root, args.repeats, work, peers)
        save()
        for name in MODELS:
            entry = results[name]
            entry["epoch_bound"] = train_step_flops(name) * steps / rate
            entry["run_10"], entry["peak_mib_run_10"] = aegen_run(
                name, 10, data_root, work / f"{name}-10"
            )
            entry.update(held_out_work(name, work / f"{name}-10", data_root, args.nll_images))
            entry["sample_bound"] = decode_flops(name, 10_000) / rate
            if name == "vae":
                entry["nll_bound"] = decode_flops(name, 10_000 * 1000) / nll_rate
            print(f"  {name}: 10-epoch run {entry['run_10']:.1f}s", flush=True)
            save()
        if peers:
            results["pythae-vae"]["run_10"] = pythae_run(10, data_root)[0]
            nll = subprocess.run(
                [
                    str(PYTHAE),
                    str(HERE / "peers" / "pythae_vae.py"),
                    "nll",
                    "--images",
                    "200",
                    "--data-root",
                    str(data_root),
                    "--device",
                    DEVICE.type,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results["pythae-vae"]["nll"] = (
                json.loads(nll.stdout.splitlines()[-1])["seconds_per_image"] * 10_000
            )
            save()
    if not args.no_scaling:
        report["scaling"] = scaling(data_root)
        save()
    print_table(report)


def print_table(report: dict) -> None:
    print(
        f"\n{report.get('device', 'cpu')}, {report.get('precision', 'fp32')}: matmul rate {report['matmul_gflops']:.1f} GFLOP/s (NLL chunks: "
        f"{report['nll_matmul_gflops']:.1f}); times in seconds; ratio = time / bound"
    )
    print(
        "| model | epoch | bound | ratio | run 1 | run 10 | eval | sample | nll (k=1000, 10k) | nll ratio | peak MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in report["results"].items():
        bound = r.get("epoch_bound")
        cells = [
            name,
            f"{r['epoch']:.3g}",
            f"{bound:.3g}" if bound else "",
            f"{r['epoch'] / bound:.2f}" if bound else "",
            f"{r['run_1']:.1f}",
            f"{r.get('run_10', float('nan')):.1f}",
            f"{r.get('eval', float('nan')):.3g}",
            f"{r.get('sample', float('nan')):.3g}",
            f"{r['nll']:.3g}" if "nll" in r else "",
            f"{r['nll'] / r['nll_bound']:.2f}" if "nll_bound" in r else "",
            f"{r.get('peak_mib_run_10', r.get('peak_mib_run_1', 0)):.0f}",
        ]
        print("| " + " | ".join(cells) + " |")
    peer = report["results"].get("pythae-vae")
    ours = report["results"].get("vae")
    if peer and ours:
        shared = [
            key for key in ("epoch", "run_1", "run_3", "run_10") if key in peer and key in ours
        ]
        print(
            "aegen's VAE / pythae's: "
            + ", ".join(f"{key.replace('_', ' ')} {ours[key] / peer[key]:.2f}x" for key in shared)
        )
    if report["scaling"]:
        print("\nepoch seconds by training images and by batch size; VAE RSS (MiB) by epoch")
        for name in [n for n in report["scaling"] if n != "vae_rss_mib_by_epoch"]:
            s = report["scaling"][name]
            print(
                f"  {name}: images "
                + ", ".join(f"{n}: {t:.2f}" for n, t in s["images"].items())
                + "; batch "
                + ", ".join(f"{b}: {t:.2f}" for b, t in s["batch"].items())
            )
        print(f"  vae RSS by epoch: {report['scaling']['vae_rss_mib_by_epoch']}")


if __name__ == "__main__":
    main()
