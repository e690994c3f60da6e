"""Helpers shared by the extension tests (a module with a unique name: several test folders
have a conftest.py, so `from conftest import …` would be ambiguous)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = Path(__file__).resolve().parent / "pages"
OUTPUT = ROOT / "test-output" / "extension"
CHROMIUM = Path(os.environ.get("CIVICSENSE_CHROMIUM", "/usr/bin/chromium"))
MODEL = "civicsense-sentiment"


def _load_build_module():
    spec = importlib.util.spec_from_file_location("civicsense_extension_build",
                                                  ROOT / "extension" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build_module()


def require_chromium() -> Path:
    """Debian's Chromium, or skip (locally) / fail (in CI, which installs it)."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = (f"{CHROMIUM} is missing: `apt-get install chromium` (Debian's package; never a "
              "downloaded browser)")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must provide Chromium: {reason}")
    pytest.skip(reason)
