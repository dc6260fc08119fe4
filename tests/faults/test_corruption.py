"""The corruption fuzzer: every file of a real run folder, damaged every way listed here, under
every command that reads run folders. Each command must succeed (exit 0) or fail with one line
(`aegen: error: ...`, exit 2), never a traceback; and a file outside the run folder that a
symbolic link in it points to (a "secret") must never reach an output, nor be written through.

The default run damages copies of the ae run and runs, for each damaged file, the commands that
read it; `-m slow` runs every command on every damaged copy of the ae and vae runs.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from run_files import plausible_scores
from safetensors.torch import load_file, save_file

from aegen.cli import main

COVERAGE = (
    "14 files x 5-45 damages each (178 damaged copies of a run folder) x 8 commands x 2 models "
    "= 2848 command runs with -m slow; by default the ae run's 178 copies under the commands "
    "that read the damaged file: 287 runs"
)

MODELS = ("ae", "vae")  # a plain and a variational model; conv-ae's files are checked alike
PICTURES = [
    "loss.png",
    "reconstructions.png",
    "latent.png",
    "interpolations.png",
    "samples.png",
    "samples-gaussian.png",
]
FILES = [
    "config.json",
    "model.safetensors",
    "model-best.safetensors",
    "checkpoint.safetensors",
    "history.jsonl",
    "sampler-gaussian.safetensors",
    "scores.json",
    "diagnosis.json",
    *PICTURES,
]
SECRET = "aegen-fuzz-secret-7f3a9c"  # what the file outside the run folder holds

# Key paths whose value is removed, or replaced by one of another JSON type, one at a time.
KEYS = {
    "config.json": [
        "format",
        "model",
        "model_config",
        "train",
        "data",
        "default_sampler",
        "aegen_version",
        "model_config.image_size",
        "train.seed",
        "train.val_fraction",
        "train.epochs",
        "data.dataset",
        "data.root",
        "data.n_train",
        "data.n_val",
        "data.image_size",
        "data.channels",
        "data.digest",
    ],
    "scores.json": [
        "model",
        "dataset",
        "protocol",
        "classifier",
        "reconstruction",
        "real_data",
        "samplers",
        "likelihood",
        "reconstruction.pixel_mse",
        "real_data.fd_aegen",
        "reconstructed_data.recall",
        "samplers.gaussian",
        "likelihood.binarised",
        "protocol.samples_per_sampler",
        "classifier.test_accuracy",
    ],
    "history.jsonl": ["epoch", "loss", "val_loss", "seconds"],  # in its last line
    "diagnosis.json": ["checks", "findings", "checks.reconstruction_mse"],
}
DEEP_KEY = {
    "config.json": "model_config.image_size",
    "scores.json": "protocol.reference",
    "history.jsonl": "loss",
    "diagnosis.json": "findings",
}


# --- the damages --------------------------------------------------------------------------------


def truncate_to_zero(path: Path, outside: Path) -> None:
    path.write_bytes(b"")


def truncate_to_half(path: Path, outside: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_middle_byte(path: Path, outside: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def delete(path: Path, outside: Path) -> None:
    path.unlink()


def symlink_outside(path: Path, outside: Path) -> None:
    """The file becomes a link to a valid version of itself outside the folder, with the secret
    in it where a reader following the link would show it."""
    target = outside / f"target-{path.name}"
    if path.suffix == ".safetensors":
        tensors, metadata = load_tensors_and_metadata(path)
        save_file(tensors, target, metadata={**metadata, "note": SECRET})
    elif path.name == "history.jsonl":
        target.write_text("".join(json.dumps({**row, SECRET: 0.0}) + "\n" for row in rows(path)))
    elif path.suffix == ".json":
        key = "aegen_version" if path.name == "config.json" else "model"
        target.write_text(json.dumps({**json.loads(path.read_text()), key: SECRET}))
    else:
        target.write_bytes(path.read_bytes() + SECRET.encode())  # a PNG ignores trailing bytes
    path.unlink()
    path.symlink_to(target)


def not_an_object(path: Path, outside: Path) -> None:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows(path)[:-1]) + "[1, 2]\n")
    else:
        path.write_text("[1, 2, 3]")


def deep_nesting(path: Path, outside: Path) -> None:
    """A document nested 100,000 deep: past any recursion limit of a parser."""
    deep = "[" * 100_000 + "]" * 100_000
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows(path)[:-1]) + deep + "\n")
    else:
        path.write_text(deep)


def deep_value(path: Path, outside: Path) -> None:
    """A value nested 900 deep, which parses: whatever prints or walks it must cope."""
    mutate(path, DEEP_KEY[path.name], lambda value: json.loads("[" * 900 + "]" * 900))


def huge_number(path: Path, outside: Path) -> None:
    """A number where a model option sets layer sizes: building it would need petabytes."""
    mutate(path, DEEP_KEY[path.name], lambda value: 10**12)


def wrong_type(key: str) -> Callable[[Path, Path], None]:
    def damage(path: Path, outside: Path) -> None:
        mutate(path, key, other_type)

    return damage


def missing(key: str) -> Callable[[Path, Path], None]:
    def damage(path: Path, outside: Path) -> None:
        mutate(path, key, None)

    return damage


def huge_shape(path: Path, outside: Path) -> None:
    """The first tensor claims 2^38 float32 numbers (1 TiB), and the file really is that long (a
    sparse file, taking no disk space): only a reader that checks the header before reading
    refuses it without trying to allocate 1 TiB."""
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    body = data[8 + size :]
    names = sorted(k for k in header if k != "__metadata__")
    layout, chunks, offset = {}, [], 0
    for name in names[1:]:  # the others keep their bytes, the huge one goes last
        start, end = header[name]["data_offsets"]
        layout[name] = {**header[name], "data_offsets": [offset, offset + end - start]}
        chunks.append(body[start:end])
        offset += end - start
    huge = 2**38 * 4
    layout[names[0]] = {
        "dtype": "F32",
        "shape": [2**18, 2**20],
        "data_offsets": [offset, offset + huge],
    }
    if "__metadata__" in header:
        layout["__metadata__"] = header["__metadata__"]
    text = json.dumps(layout).encode()
    text += b" " * (-len(text) % 8)
    with path.open("wb") as handle:
        handle.write(len(text).to_bytes(8, "little") + text + b"".join(chunks))
        handle.truncate(8 + len(text) + offset + huge)
    if path.stat().st_blocks * 512 > 2**30:
        path.unlink()
        pytest.skip("this file system does not keep sparse files")


def non_finite(path: Path, outside: Path) -> None:
    tensors, metadata = load_tensors_and_metadata(path)
    name = next(k for k, v in sorted(tensors.items()) if v.is_floating_point() and v.numel())
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, path, metadata=metadata)


def float64(path: Path, outside: Path) -> None:
    tensors, metadata = load_tensors_and_metadata(path)
    doubled = {k: v.double() if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(doubled, path, metadata=metadata)


GENERIC = {
    "empty": truncate_to_zero,
    "half": truncate_to_half,
    "flipped-byte": flip_a_middle_byte,
    "symlink-outside": symlink_outside,
    "deleted": delete,
}
JSON_DAMAGES = {
    "not-an-object": not_an_object,
    "deep-nesting": deep_nesting,
    "deep-value": deep_value,
    "huge-number": huge_number,
}
TENSOR_DAMAGES = {"huge-shape": huge_shape, "non-finite": non_finite, "float64": float64}


def damages_of(file: str) -> dict[str, Callable[[Path, Path], None]]:
    """Every damage that applies to a file, by name."""
    damages = dict(GENERIC)
    if file in KEYS:
        damages.update(JSON_DAMAGES)
        damages.update({f"wrong-type:{key}": wrong_type(key) for key in KEYS[file]})
        damages.update({f"missing:{key}": missing(key) for key in KEYS[file]})
    if file.endswith(".safetensors"):
        damages.update(TENSOR_DAMAGES)
    return damages


CASES = [(file, damage) for file in FILES for damage in damages_of(file)]


# --- helpers ------------------------------------------------------------------------------------


def load_tensors_and_metadata(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        metadata = handle.metadata() or {}
    return load_file(path), metadata


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def other_type(value: Any) -> Any:
    """A value of another JSON type than value."""
    if isinstance(value, dict):
        return []
    if isinstance(value, list):
        return {}
    if isinstance(value, str):
        return 7
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, (int, float)):
        return "x"
    return [1]


def mutate(path: Path, key: str, change: Callable[[Any], Any] | None) -> None:
    """Replace the value at a dotted key path by change(value), or delete it (change None); in a
    JSON-lines file the key is in the last line."""
    lines = rows(path) if path.suffix == ".jsonl" else [json.loads(path.read_text())]
    *parents, last = key.split(".")
    section = lines[-1]
    for part in parents:
        section = section[part]
    assert last in section, f"{path.name} has no {key}: update KEYS"
    if change is None:
        del section[last]
    else:
        section[last] = change(section[last])
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in lines))
    else:
        path.write_text(json.dumps(lines[0]))


COMMANDS: dict[str, Callable[[Path, Path, str], list[str]]] = {
    "sample": lambda run, out, model: ["sample", str(run), "-n", "4", "--out", str(out / "x.npy")],
    "sample --weights last": lambda run, out, model: [
        *["sample", str(run), "-n", "4", "--weights", "last", "--out", str(out / "x.npy")]
    ],
    "reconstruct": lambda run, out, model: [
        "reconstruct",
        str(run),
        "-n",
        "4",
        "--out",
        str(out / "reconstructions.npy"),
    ],
    "encode": lambda run, out, model: ["encode", str(run), "--out", str(out / "codes.npz")],
    "pictures": lambda run, out, model: ["pictures", str(run)],
    "report": lambda run, out, model: ["report", str(run), "--out", str(out / "report.html")],
    "compare": lambda run, out, model: ["compare", str(run), "--out", str(out / "compare")],
    "train --resume": lambda run, out, model: [
        *["train", model, "--resume", "--epochs", "3", "--out", str(run), "--quiet"]
    ],
}
# Defects the fuzzer found outside the readers: (model, file, damage, command) -> why; each
# fails until fixed, when the test says so. None is known.
KNOWN_DEFECTS: dict[tuple[str, str, str, str], str] = {}
# The commands that read each file, for the default run.
READERS = {
    "config.json": ["sample", "report"],
    "model.safetensors": ["sample --weights last"],  # the report reads no weights
    "model-best.safetensors": ["sample", "reconstruct"],
    "checkpoint.safetensors": ["train --resume"],
    "history.jsonl": ["pictures", "report"],
    "sampler-gaussian.safetensors": ["sample"],
    "scores.json": ["report", "compare"],
    "diagnosis.json": ["report"],
    **{picture: ["report"] for picture in PICTURES},
}


@pytest.fixture(scope="module")
def prepared(trained_runs, tmp_path_factory) -> dict[str, Path]:
    """Copies of the trained runs with every file the fuzzer damages: a gaussian sampler and
    its samples (from `aegen sample`) and a hand-written scores.json; nothing else."""
    root = tmp_path_factory.mktemp("prepared")
    runs = {}
    for model in MODELS:
        run_dir = root / model
        shutil.copytree(trained_runs[model].run_dir, run_dir)
        for path in run_dir.iterdir():  # other tests may have evaluated the shared runs
            if path.name not in FILES or path.name.startswith("sampler-"):
                path.unlink()
        samples = run_dir / "samples-gaussian.png"
        argv = ["sample", str(run_dir), "--sampler", "gaussian", "--out", str(samples)]
        assert main(argv) == 0
        (run_dir / "scores.json").write_text(json.dumps(plausible_scores(run_dir, model)))
        assert sorted(p.name for p in run_dir.iterdir()) == sorted(FILES)
        runs[model] = run_dir
    return runs


def run_damaged(
    source: Path, model: str, file: str, damage: str, command: str, root: Path, capsys
) -> None:
    """Copy a run, damage one file, run one command; check the outcome and every output."""
    case = f"{model} / {file} / {damage} / aegen {command}"
    work = root / command.replace(" --", "-")
    run_dir, out, outside = work / "run", work / "out", work / "outside"
    shutil.copytree(source, run_dir)
    out.mkdir()
    outside.mkdir()
    damages_of(file)[damage](run_dir / file, outside)
    secrets = {p: p.read_bytes() for p in outside.iterdir()}
    capsys.readouterr()
    try:
        status = main(COMMANDS[command](run_dir, out, model))
    except BaseException as exc:  # noqa: BLE001 - any escape is the failure this test is for
        raise AssertionError(f"{case}: {type(exc).__name__} escaped: {exc}") from exc
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err, case
    lines = captured.err.strip().splitlines()
    assert status == 0 or (
        status == 2 and len(lines) == 1 and lines[0].startswith("aegen: error: ")
    ), f"{case}: exit {status}, stderr {captured.err!r}"
    assert SECRET not in captured.out + captured.err, case
    for path in work.rglob("*"):
        if outside in path.parents or path.is_symlink() or not path.is_file():
            continue
        if path.stat().st_size > 2**30:  # the sparse file of huge_shape, an input not an output
            continue
        content = path.read_bytes()
        if path.suffix == ".html":
            content += b"".join(
                base64.b64decode(data)
                for data in re.findall(rb"data:[^;]+;base64,([A-Za-z0-9+/=]+)", content)
            )
        assert SECRET.encode() not in content, f"{case}: the secret reached {path}"
    assert {p: p.read_bytes() for p in outside.iterdir()} == secrets, f"{case}: wrote through"
    shutil.rmtree(work)  # a passed case's copy goes at once: the sweep makes thousands of them


# --- the tests ----------------------------------------------------------------------------------


def test_coverage_line_counts_what_the_fuzzer_runs():
    default_runs = sum(len(READERS[file]) for file, _ in CASES)
    slow_runs = len(CASES) * len(COMMANDS) * len(MODELS)
    counts = [len(damages_of(file)) for file in FILES]
    assert COVERAGE == (
        f"{len(FILES)} files x {min(counts)}-{max(counts)} damages each ({len(CASES)} damaged "
        f"copies of a run folder) x {len(COMMANDS)} commands x {len(MODELS)} models "
        f"= {slow_runs} command runs with -m slow; by default the ae run's {len(CASES)} copies "
        f"under the commands that read the damaged file: {default_runs} runs"
    )


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_undamaged_run_passes_every_command(prepared, tmp_path, capsys, command):
    """The fuzzer's baseline: the prepared folder itself works with every command."""
    out = tmp_path / "out"
    run_dir = tmp_path / "run"
    shutil.copytree(prepared["ae"], run_dir)
    out.mkdir()
    assert main(COMMANDS[command](run_dir, out, "ae")) == 0, capsys.readouterr().err


@pytest.mark.parametrize("file, damage", CASES)
def test_a_damaged_file_fails_cleanly_under_its_readers(prepared, tmp_path, capsys, file, damage):
    for command in READERS[file]:
        run_damaged(prepared["ae"], "ae", file, damage, command, tmp_path, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("file, damage", CASES)
def test_a_damaged_file_fails_cleanly_under_every_command(
    prepared, tmp_path, capsys, model, file, damage
):
    known = []
    for command in COMMANDS:
        defect = KNOWN_DEFECTS.get((model, file, damage, command))
        try:
            run_damaged(prepared[model], model, file, damage, command, tmp_path, capsys)
        except AssertionError:
            if defect is None:
                raise
            known.append(defect)
        else:
            assert defect is None, f"fixed: remove it from KNOWN_DEFECTS ({defect})"
    if known:
        pytest.xfail("; ".join(known))


# --- what the readers say -----------------------------------------------------------------------


def damaged_copy(prepared, tmp_path, damage: Callable[[Path], None], model: str = "ae") -> Path:
    run_dir = tmp_path / model
    shutil.copytree(prepared[model], run_dir)
    damage(run_dir)
    return run_dir


def rewrite_checkpoint(run_dir: Path, **metadata: str) -> None:
    path = run_dir / "checkpoint.safetensors"
    tensors, saved = load_tensors_and_metadata(path)
    save_file(tensors, path, metadata={**saved, **metadata})


def test_weights_of_another_dtype_say_so(prepared, tmp_path):
    from aegen.errors import RunError
    from aegen.trained import load

    run_dir = damaged_copy(prepared, tmp_path, lambda d: float64(d / "model.safetensors", d))
    with pytest.raises(
        RunError, match="'encoder.0.weight' is float64, the 'ae' model needs float32"
    ):
        load(run_dir, weights="last")


def test_non_finite_weights_are_refused(prepared, tmp_path):
    from aegen.errors import RunError
    from aegen.trained import load

    for name, weights in (("model.safetensors", "last"), ("model-best.safetensors", "best")):
        run_dir = damaged_copy(
            prepared, tmp_path / weights, lambda d, name=name: non_finite(d / name, d)
        )
        with pytest.raises(RunError, match=f"{name} holds non-finite weights"):
            load(run_dir, weights=weights)


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({"epoch": "-1"}, "its epoch '-1' is not a whole number >= 0"),
        ({"epoch": "5"}, "records epoch 5 but a history of 2 epochs"),
        ({"history": '[{"epoch": 2, "loss": 1, "val_loss": 1}]'}, "entry 1 is not epoch 1"),
        ({"history": '{"epoch": 1}'}, "its history is not a list of epochs"),
        ({"param_groups": "[]"}, "its param_groups do not match the model's optimizer"),
        ({"param_groups": "[{"}, "(param_groups) is not valid JSON"),
        ({"optimizer_scalars": '{"99": {"step": 1}}'}, "optimizer_scalars are not numbers"),
        ({"best_epoch": "0"}, "its best epoch '0' is not one of its epochs"),
        ({"best_epoch": "3"}, "its best epoch '3' is not one of its epochs"),
        ({"best_epoch": "1e3"}, "its best epoch '1e3' is not one of its epochs"),
    ],
)
def test_a_checkpoint_with_malformed_metadata_is_refused(
    prepared, tmp_path, capsys, metadata, message
):
    run_dir = damaged_copy(prepared, tmp_path, lambda d: rewrite_checkpoint(d, **metadata))
    argv = ["train", "ae", "--resume", "--epochs", "3", "--out", str(run_dir), "--quiet"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_symlinked_picture_is_skipped_in_the_report(prepared, tmp_path):
    from aegen.views.report import report_html

    run_dir = damaged_copy(
        prepared, tmp_path, lambda d: symlink_outside(d / "latent.png", tmp_path)
    )
    page = report_html([run_dir])
    assert "Picture skipped" in page and "latent.png is a symbolic link" in page
    assert SECRET.encode() not in b"".join(
        base64.b64decode(data) for data in re.findall(r"base64,([A-Za-z0-9+/=]+)", page)
    )
