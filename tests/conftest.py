"""Shared fixtures: storyboards written to tmp folders, test media made with lavfi."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def write_storyboard(tmp_path: Path):
    """Writes a storyboard (dedented YAML) into tmp_path and returns its path."""

    def write(text: str, name: str = "storyboard.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


@pytest.fixture(autouse=True)
def _not_ci_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI services set CI=true, which turns on `stitch`'s CI mode (JSON on stdout) for
    every command the tests run; tests of CI mode set it themselves."""
    monkeypatch.delenv("CI", raising=False)
