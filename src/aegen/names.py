"""Suggestions for mistyped names ("did you mean ...?")."""

import difflib
from collections.abc import Iterable


def closest(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' suffix when one choice is close to name, else ''."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""
