"""`python -m aegen` (and torchrun) enter the CLI here."""

import signal
import sys

stopped_by = signal.SIGINT


def _stop(signum: int, frame: object) -> None:
    global stopped_by
    stopped_by = signal.Signals(signum)
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _stop)  # until the CLI puts its own handler in place
try:
    from aegen.cli import run
except KeyboardInterrupt:  # stopped while Python imports the CLI: one line, as later on
    sys.stderr.write("aegen: interrupted while starting; nothing was written\n")
    sys.exit(128 + stopped_by)

run()
