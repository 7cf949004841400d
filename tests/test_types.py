"""Static types of the layers everything else builds on: core/ and the source interface."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_core_and_source_interface_type_check():
    pytest.importorskip("mypy")
    r = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports", "--follow-imports=silent",
                        "--no-error-summary", "flight_server/core", "flight_server/sources/base.py",
                        "flight_server/sources/__init__.py"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
