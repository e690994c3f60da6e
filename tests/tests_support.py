"""Helpers importable from any test module (pytest puts tests/ on sys.path)."""

from pathlib import Path

import pytest

from civicsense.settings import MIRROR_DATA  # noqa: F401  (re-exported for tests)


def require_mirror_dir() -> Path:
    """The SemEval mirror, or skip with the reason."""
    if not MIRROR_DATA.is_dir():
        pytest.skip(f"data mirror absent: {MIRROR_DATA} (CI provides ../shared/data)")
    return MIRROR_DATA
