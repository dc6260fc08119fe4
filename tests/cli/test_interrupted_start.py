"""Ctrl-C or SIGTERM while aegen starts (importing torch takes seconds) prints one line and
exits 130 or 143, as a stop later on does; nothing has been written then."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

import aegen.cli

STOP_AT_IMPORT = """
import sys, runpy

class Stop:  # Ctrl-C arriving while Python imports the CLI
    def find_spec(self, name, path=None, target=None):
        if name == "aegen.cli":
            raise KeyboardInterrupt

sys.meta_path.insert(0, Stop())
runpy.run_module("aegen", run_name="__main__")
"""


def test_a_stop_while_the_cli_is_imported_is_one_line():
    done = subprocess.run(
        [sys.executable, "-c", STOP_AT_IMPORT, "train", "ae"], capture_output=True, text=True
    )
    assert done.returncode == 130
    assert done.stderr == "aegen: interrupted while starting; nothing was written\n"


@pytest.mark.parametrize(("terminated", "status"), [(False, 130), (True, 143)])
def test_a_stop_before_the_command_runs_is_one_line(capsys, monkeypatch, terminated, status):
    def starting(argv=None):  # what main() does first: build the parser, importing torch
        monkeypatch.setattr(aegen.cli, "_terminated", terminated)
        raise KeyboardInterrupt

    monkeypatch.setattr(aegen.cli, "main", starting)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as stopped:
            aegen.cli.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == status
    assert capsys.readouterr().err == "aegen: interrupted while starting; nothing was written\n"
