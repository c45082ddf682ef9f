"""The style gates of DEVELOPERS.md: ruff and mypy pass on the whole project."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_ruff_passes() -> None:
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:]


def test_mypy_passes() -> None:
    out = subprocess.run([sys.executable, "-m", "mypy", "eofusion", "catalog", "server", "plugins", "deploy", "cli"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:]
