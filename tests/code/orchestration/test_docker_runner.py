"""The DockerRunner's container arguments (no engine needed): the state mounted read-write at
its own path, a local data source read-only, the settings as env, the caller's uid."""

from __future__ import annotations

import os

import pytest

from civicsense.orchestration.docker_runner import container_run_args, local_image, pick_runner
from civicsense.settings import Settings


def test_state_and_data_are_mounted_and_named_in_the_environment(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    settings = Settings(home=tmp_path / "home", data=str(data))
    args = container_run_args(settings)
    mounts = {m["Target"]: m for m in args["mounts"]}
    home = str(settings.home_dir)
    assert mounts[home]["Source"] == home and not mounts[home]["ReadOnly"]
    assert mounts[str(data)]["ReadOnly"]
    assert args["environment"]["CIVICSENSE_HOME"] == home
    assert args["environment"]["MLFLOW_TRACKING_URI"] == settings.tracking_uri
    assert args["user"] == f"{os.getuid()}:{os.getgid()}"
    assert "network_mode" not in args


def test_a_remote_source_is_not_mounted_and_the_emulator_gets_host_networking(tmp_path):
    settings = Settings(home=tmp_path / "home", data="gs://bucket/data",
                        STORAGE_EMULATOR_HOST="http://127.0.0.1:9023")
    args = container_run_args(settings)
    assert len(args["mounts"]) == 1 and args["network_mode"] == "host"
    assert args["environment"]["STORAGE_EMULATOR_HOST"] == "http://127.0.0.1:9023"


def test_the_default_image_is_this_trees_tag():
    repository, _, tag = local_image("civicsense-components").partition(":")
    assert repository == "civicsense-components" and tag.startswith("0.1.0-")


def test_runner_names(tmp_path):
    assert pick_runner("subprocess", Settings(home=tmp_path)) is None
    with pytest.raises(ValueError, match="subprocess' or 'docker"):
        pick_runner("kubernetes", Settings(home=tmp_path))
