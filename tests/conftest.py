"""Shared fixtures: the data mirror, isolated state directories, and one real pipeline run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from civicsense.settings import MIRROR_DATA, Settings
from tests_support import require_mirror_dir

FIXTURES = Path(__file__).parent / "fixtures"
STANCE_DATA = MIRROR_DATA.parent / "tweeteval-stance"
E2E_SAMPLE = 4000


@pytest.fixture
def mirror() -> Path:
    return require_mirror_dir()


@pytest.fixture
def civicsense_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings on a fresh state directory, exported so subprocesses and Feast agree."""
    monkeypatch.setenv("CIVICSENSE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return Settings()


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, dict]]:
    """One real local pipeline run (KFP local runner) on a mirror sample: a state directory
    whose MLflow registry holds civicsense-sentiment@champion, and the run's summary."""
    require_mirror_dir()
    from civicsense.params import PipelineParams
    from civicsense.pipeline import run_local

    home = tmp_path_factory.mktemp("trained-home")
    saved = {k: os.environ.get(k) for k in ("CIVICSENSE_HOME", "CIVICSENSE_DATA",
                                            "MLFLOW_TRACKING_URI")}
    os.environ["CIVICSENSE_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        settings = Settings(data=str(MIRROR_DATA))
        summary = run_local(settings, PipelineParams(sample_size=E2E_SAMPLE), cache=True)
        yield Settings(data=str(MIRROR_DATA)), summary
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
