"""The colour that transparent pixels are composited over: its names and their RGB values.

Kept apart from decode.py, which imports torch, so that checking a setting stays cheap.
"""

from __future__ import annotations

import re

from aegen.errors import ConfigError

RGB = tuple[int, int, int]

DEFAULT_BACKGROUND = "white"  # as an image viewer shows a transparent icon
NAMED = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128)}
NAMED["grey"] = NAMED["gray"]
_HEX = re.compile(r"#[0-9a-fA-F]{6}")


def background_rgb(name: str) -> RGB:
    """The RGB value of a background: white, black, gray (or grey), or a hex colour #RRGGBB."""
    if isinstance(name, str) and name.lower() in NAMED:
        return NAMED[name.lower()]
    if isinstance(name, str) and _HEX.fullmatch(name):
        red, green, blue = (int(name[i : i + 2], 16) for i in (1, 3, 5))
        return red, green, blue
    raise ConfigError(
        f"unknown background colour {name!r}: use white, black, gray (or grey) or a hex "
        "colour such as #00ff00"
    )
