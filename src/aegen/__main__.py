"""`python -m aegen` (and torchrun) enter the CLI here."""

from aegen.cli import run

run()
