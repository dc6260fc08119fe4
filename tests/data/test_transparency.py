"""Transparent pixels (RGBA, LA and palette PNGs: icons, emoji) are composited over a stated
background, white unless --background names another, before any resizing; each background is its
own cache entry, a run records its background, and an unknown colour is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aegen.cli import main
from aegen.data import decode, own_images
from aegen.data.background import background_rgb
from aegen.data.own_images import load_own_images
from aegen.errors import ConfigError, RunError
from aegen.runs.config import RunConfig
from aegen.settings.train import settings_from
from aegen.training.run import load, train

HALF_RED = (255, 0, 0, 128)  # alpha 128 of 255: the composite is exact in whole numbers
# The half-transparent red over each background, and the fully transparent area.
EXPECTED_RGBA = {
    "white": ((255, 127, 127), (255, 255, 255)),
    "black": ((128, 0, 0), (0, 0, 0)),
    "#00ff00": ((128, 127, 0), (0, 255, 0)),
}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Every test decodes into its own cache, and starts with an empty in-process cache."""
    monkeypatch.setenv("AEGEN_CACHE", str(tmp_path / "cache"))
    own_images._load_cached.cache_clear()


def icon(path, size=8, colour=HALF_RED):
    """An RGBA icon: a square of `colour` in the middle of a fully transparent black one."""
    array = np.zeros((size, size, 4), np.uint8)
    array[size // 4 : -(size // 4), size // 4 : -(size // 4)] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, "RGBA").save(path)
    return path


def pixel(image: torch.Tensor, y: int, x: int) -> tuple[int, ...]:
    return tuple(image[:, y, x].tolist())


@pytest.mark.parametrize("background", EXPECTED_RGBA)
def test_rgba_is_composited_over_the_background(tmp_path, background):
    path = icon(tmp_path / "a.png")
    image = decode.decode_file(str(path), None, None, background_rgb(background))
    inside, outside = EXPECTED_RGBA[background]
    assert isinstance(image, torch.Tensor) and image.shape == (3, 8, 8)
    assert pixel(image, 4, 4) == inside and pixel(image, 0, 0) == outside


def test_white_is_the_default_background(tmp_path):
    path = icon(tmp_path / "a.png")
    image = decode.decode_file(str(path), None, None)
    assert isinstance(image, torch.Tensor)
    assert (pixel(image, 4, 4), pixel(image, 0, 0)) == EXPECTED_RGBA["white"]
    assert settings_from({}).background == "white"


@pytest.mark.parametrize(
    ("background", "inside", "outside"),
    [("white", 127, 255), ("black", 0, 0), ("#00ff00", 75, 150)],  # gray: Pillow's luma
)
def test_gray_with_alpha_is_composited_and_stays_gray(tmp_path, background, inside, outside):
    array = np.zeros((4, 4, 2), np.uint8)  # transparent black
    array[1:3, 1:3] = (0, 128)  # half-transparent black
    Image.fromarray(array, "LA").save(tmp_path / "la.png")
    image = decode.decode_file(str(tmp_path / "la.png"), None, None, background_rgb(background))
    assert isinstance(image, torch.Tensor) and image.shape == (1, 4, 4)
    assert image[0, 1, 1] == inside and image[0, 0, 0] == outside


@pytest.mark.parametrize("background", EXPECTED_RGBA)
def test_a_palette_with_transparent_entries_is_composited(tmp_path, background):
    indices = np.array([[0, 1], [2, 0]], np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255])  # black, red, blue
    image.save(tmp_path / "p.png", transparency=bytes([0, 128, 255]))  # alpha per entry
    with Image.open(tmp_path / "p.png") as reread:
        assert reread.mode == "P" and "transparency" in reread.info
    decoded = decode.decode_file(str(tmp_path / "p.png"), None, None, background_rgb(background))
    inside, outside = EXPECTED_RGBA[background]
    assert isinstance(decoded, torch.Tensor)
    assert pixel(decoded, 0, 0) == outside and pixel(decoded, 1, 1) == outside
    assert pixel(decoded, 0, 1) == inside and pixel(decoded, 1, 0) == (0, 0, 255)


def test_resizing_a_transparent_icon_leaves_no_dark_fringe(tmp_path):
    # Opaque red on transparent black: resampled before compositing, the hidden black would
    # darken the red's edge; composited first, red and white only ever meet.
    path = icon(tmp_path / "a.png", size=50, colour=(255, 0, 0, 255))
    image = decode.decode_file(str(path), 16, None)
    assert isinstance(image, torch.Tensor) and image.shape == (3, 16, 16)
    assert image[0].unique().tolist() == [255]  # no dark edge in the red channel
    assert pixel(image, 0, 0) == (255, 255, 255)  # the transparent border stays white
    assert pixel(image, 8, 8) == (255, 0, 0)


def test_the_cache_keeps_each_background_apart(tmp_path, monkeypatch):
    folder = tmp_path / "icons"
    for name in ("a.png", "b.png"):
        icon(folder / name)
    white = load_own_images(str(folder), None, None, "white")
    black = load_own_images(str(folder), None, None, "black")
    gray = load_own_images(str(folder), None, None, "gray")
    assert pixel(white.images[0], 0, 0) == (255, 255, 255)
    assert pixel(black.images[0], 0, 0) == (0, 0, 0)
    assert pixel(gray.images[0], 0, 0) == (128, 128, 128)
    assert len({white.digest, black.digest, gray.digest}) == 3
    assert len(list((tmp_path / "cache" / "images").glob("*.safetensors"))) == 3

    own_images._load_cached.cache_clear()
    monkeypatch.setattr(own_images.decode, "decode_files", _must_not_decode)
    for name, first in (("white", white), ("black", black), ("grey", gray)):  # grey is gray
        again = load_own_images(str(folder), None, None, name)
        assert torch.equal(again.images, first.images) and again.digest == first.digest


def _must_not_decode(*args):
    raise AssertionError("decoded again")


@pytest.mark.parametrize("name", ["white", "Black", "gray", "grey", "#00ff00", "#A0B1C2"])
def test_named_and_hex_colours_are_accepted(name):
    assert settings_from({"background": name}).background == name


@pytest.mark.parametrize("name", ["nope", "#0f0", "00ff00", "#00ff0g", "", "#00ff00 "])
def test_an_unknown_colour_is_refused_in_one_sentence(tmp_path, name):
    with pytest.raises(ConfigError, match="unknown background colour") as refused:
        settings_from({"background": name})
    assert "\n" not in str(refused.value)
    icon(tmp_path / "f" / "a.png")
    with pytest.raises(ConfigError):
        load_own_images(str(tmp_path / "f"), None, None, name)


def test_a_bad_colour_on_the_command_line_is_one_line_and_exit_2(tmp_path, capsys):
    icon(tmp_path / "f" / "a.png")
    argv = ["train", "ae", "--dataset", str(tmp_path / "f"), "--background", "nope"]
    status = main([*argv, "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and "unknown background colour 'nope'" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_a_run_records_its_background_and_reads_its_images_over_it(tmp_path):
    folder = tmp_path / "icons"
    for i in range(10):
        icon(folder / f"{i}.png")
    run = tmp_path / "run"
    train("ae", str(folder), background="black", epochs=1, out=run, progress=False)
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["background"] == "black"
    assert RunConfig.from_json(Path("config.json"), config).settings.background == "black"
    own_images._load_cached.cache_clear()
    held_out = load(run).split("val").images
    assert pixel(held_out[0], 0, 0) == (0, 0, 0) and pixel(held_out[0], 4, 4) == (128, 0, 0)

    del config["data"]["background"]  # a run folder from before the setting: white
    assert RunConfig.from_json(Path("config.json"), config).settings.background == "white"
    config["data"]["background"] = "nope"
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match="settings aegen cannot use .unknown background colour"):
        load(run)
