"""Pipeline images and the shipped pipeline: `pipeline compile --image` sets every executor's
image and changes nothing else; submit, schedule and the drift trigger send the YAML the package
ships (a temporary copy for another image) through the real kfp.Client, compile nothing and
write nothing into a read-only package directory."""

from __future__ import annotations

import copy
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from typer.testing import CliRunner

from civicsense.cli.app import app
from civicsense.orchestration import compiled
from civicsense.orchestration.compiled import (
    LABEL_EXPORT,
    LABEL_IMPORT,
    TRAINING,
    check_image,
    executor_images,
    image_problems,
    pipeline_package,
    shipped,
    with_image,
)
from civicsense.orchestration.runner import COMPILED_PIPELINE, submit
from civicsense.orchestration.schedule import create_schedule
from civicsense.settings import DEFAULT_COMPONENT_IMAGE, PROJECT_ROOT, Settings
from civicsense.training.params import PipelineParams

KIND_IMAGE = "civicsense-components:0.1.0-abc"
NAMES = (TRAINING, LABEL_EXPORT, LABEL_IMPORT)
SHIPPED_MARK = "the copy in the read-only package"
runner = CliRunner()


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def strict_parse(path: Path) -> pipeline_spec_pb2.PipelineSpec:
    """The platform notes' strict parse: an unknown or misplaced field raises."""
    docs = documents(path)
    spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
    for platform in docs[1:]:
        json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    return spec


def without_images(docs: list[dict]) -> list[dict]:
    docs = copy.deepcopy(docs)
    for executor in docs[0]["deploymentSpec"]["executors"].values():
        executor["container"].pop("image")
    return docs


def snapshot(directory: Path) -> dict[str, tuple[int, bytes]]:
    """Every entry's mtime and bytes, and the directory's own mtime (it moves when an entry is
    created or removed, even briefly): equal snapshots mean nothing was written there."""
    found = {".": (directory.stat().st_mtime_ns, b"")}
    for path in sorted(directory.iterdir()):
        found[path.name] = (path.stat().st_mtime_ns,
                            path.read_bytes() if path.is_file() else b"")
    return found


def yaml_files(directory: Path) -> dict[str, tuple[int, bytes]]:
    return {name: (directory.joinpath(name).stat().st_mtime_ns,
                   directory.joinpath(name).read_bytes()) for name in NAMES}


@pytest.fixture
def read_only_package(tmp_path, monkeypatch) -> Path:
    """A copy of the shipped `pipelines` package (its __init__ and YAMLs), read-only, made the
    package compiled.py reads; KFP's compiler fails if anything calls it."""
    package = tmp_path / "site" / "shipped_pipelines"
    package.mkdir(parents=True)
    for name in ("__init__.py", *NAMES):
        shutil.copy2(PROJECT_ROOT / "pipelines" / name, package / name)
    # A mark only this copy carries: what is sent came from here, not from the source tree.
    docs = documents(package / TRAINING)
    docs[0]["pipelineInfo"]["description"] = SHIPPED_MARK
    (package / TRAINING).write_text(yaml.dump_all(docs, sort_keys=True))
    for name in ("__init__.py", *NAMES):
        (package / name).chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    package.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no __pycache__ in the package
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.setattr(compiled, "PACKAGE", "shipped_pipelines")

    def no_compile(*_args, **_kwargs):
        raise AssertionError("the pipeline was compiled")

    monkeypatch.setattr("kfp.compiler.Compiler.compile", no_compile)
    yield package
    package.chmod(stat.S_IRWXU)


def local_data(tmp_path: Path) -> str:
    (tmp_path / "data.csv").write_text("text,label\nok,positive\n")
    return str(tmp_path / "data.csv")


def posted_spec(calls: list, path_part: str) -> dict:
    (body,) = [body for method, path, body in calls if method == "POST" and path_part in path]
    return body["pipeline_spec"]


# ---------------------------------------------------------------- compile --image


def test_compile_image_sets_every_executor_and_changes_nothing_else(tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["pipeline", "compile", "--image", KIND_IMAGE,
                                 "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(NAMES)
    for name in NAMES:
        images = executor_images(out / name)
        assert images and set(images.values()) == {KIND_IMAGE}
        assert image_problems(out / name, KIND_IMAGE) == []
        strict_parse(out / name)
        committed = PROJECT_ROOT / "pipelines" / name
        assert without_images(documents(out / name)) == without_images(documents(committed))
        assert f"wrote {out / name} (image {KIND_IMAGE})" in result.output
    assert len(executor_images(out / TRAINING)) >= 6  # ingest … register (+ tune)


def test_compile_image_alone_leaves_the_committed_yamls_alone(tmp_path, monkeypatch):
    before = yaml_files(PROJECT_ROOT / "pipelines")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["pipeline", "compile", "--image", KIND_IMAGE])
    assert result.exit_code == 0, result.output
    for name in NAMES:
        assert set(executor_images(tmp_path / "build" / "pipelines" / name).values()) == {
            KIND_IMAGE}
    assert yaml_files(PROJECT_ROOT / "pipelines") == before
    assert set(executor_images(COMPILED_PIPELINE).values()) == {DEFAULT_COMPONENT_IMAGE}


def test_the_default_image_rewrite_is_byte_identical_to_kfps_own_output(tmp_path):
    """with_image writes KFP's layout: the committed YAML with its own image is unchanged."""
    for name in NAMES:
        committed = PROJECT_ROOT / "pipelines" / name
        again = with_image(committed, DEFAULT_COMPONENT_IMAGE, tmp_path / name)
        assert again.read_bytes() == committed.read_bytes()


def test_compile_image_on_one_file(tmp_path):
    out = tmp_path / "training.yaml"
    result = runner.invoke(app, ["pipeline", "compile", "--image", KIND_IMAGE, "--output",
                                 str(out)])
    assert result.exit_code == 0, result.output
    assert set(executor_images(out).values()) == {KIND_IMAGE}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training.yaml"]


@pytest.mark.parametrize("image", ["", "Civicsense:1", "civicsense components:1",
                                   "civicsense-components::1", "-bad:1", "a:b:c",
                                   "civicsense-components:1@sha256:abc"])
def test_a_bad_image_is_a_one_line_error(image, tmp_path):
    for args in (["pipeline", "compile", "--output-dir", str(tmp_path / "o")],
                 ["pipeline", "submit", "--host", "http://127.0.0.1:9"],
                 ["schedule", "create", "--host", "http://127.0.0.1:9"]):
        result = runner.invoke(app, [*args, "--image", image])
        assert result.exit_code == 2, result.output
        assert result.output.strip().startswith("error: not a container image reference")
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("image", [
    KIND_IMAGE, DEFAULT_COMPONENT_IMAGE, "localhost:5000/cs/civicsense-components:0.1.0",
    "europe-west1-docker.pkg.dev/p/civicsense/civicsense-components@sha256:" + "a" * 64,
    "civicsense-components", "registry.example/a__b/c-d.e:V1_x"])
def test_image_references_that_pass(image):
    assert check_image(image) == image


def test_compile_refuses_output_and_output_dir_together(tmp_path):
    result = runner.invoke(app, ["pipeline", "compile", "--output", str(tmp_path / "p.yaml"),
                                 "--output-dir", str(tmp_path)])
    assert result.exit_code == 2 and "not both" in result.output


def test_make_compile_passes_the_image_only_when_given():
    def dry_run(*args: str) -> str:
        env = {k: v for k, v in os.environ.items()
               if k not in {"IMAGE", "COMPONENT_IMAGE", "IMAGE_TAG"}}
        done = subprocess.run(["make", "-n", "--no-print-directory", "compile", *args],
                              cwd=PROJECT_ROOT, capture_output=True, text=True, env=env,
                              timeout=120, check=True)
        return next(line for line in done.stdout.splitlines()
                    if "pipeline compile" in line).strip()

    assert dry_run().endswith("civicsense pipeline compile")
    assert dry_run(f"IMAGE={KIND_IMAGE}").endswith(
        f"pipeline compile --image {KIND_IMAGE} --output-dir build/pipelines")
    assert dry_run("COMPONENT_IMAGE=reg:5000/c:1").endswith(
        "--image reg:5000/c:1 --output-dir build/pipelines")
    assert dry_run("IMAGE_TAG=0.1.0-abc").endswith(
        "--image civicsense-components:0.1.0-abc --output-dir build/pipelines")


# ---------------------------------------------------------------- the shipped pipeline


def test_the_package_ships_the_committed_yamls():
    for name in NAMES:
        assert shipped(name).read_bytes() == (PROJECT_ROOT / "pipelines" / name).read_bytes()
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    assert '[tool.setuptools.package-data]\npipelines = ["*.yaml"]' in pyproject


def test_the_package_is_used_as_is_for_its_own_image(read_only_package):
    before = snapshot(read_only_package)
    for image in (None, DEFAULT_COMPONENT_IMAGE):
        with pipeline_package(image) as package:
            assert package == read_only_package / TRAINING
    with pipeline_package(KIND_IMAGE) as package:
        assert package.parent != read_only_package and package.is_file()
        assert set(executor_images(package).values()) == {KIND_IMAGE}
    assert not package.exists() and not package.parent.exists()  # the copy is gone
    assert snapshot(read_only_package) == before


def test_submit_sends_the_shipped_yaml_and_writes_nothing(kfp_api, read_only_package,
                                                           tmp_path):
    host, calls = kfp_api
    before = snapshot(read_only_package)
    settings = Settings(home=tmp_path / "home", data=local_data(tmp_path))
    submit(host, settings, PipelineParams(), "civicsense")
    sent = posted_spec(calls, "/runs")
    assert [sent["pipeline_spec"], sent["platform_spec"]] == documents(
        read_only_package / TRAINING)
    assert sent["pipeline_spec"]["pipelineInfo"]["description"] == SHIPPED_MARK
    assert snapshot(read_only_package) == before


def test_submit_for_another_image_sends_a_copy_with_it(kfp_api, read_only_package, tmp_path):
    host, calls = kfp_api
    before = snapshot(read_only_package)
    settings = Settings(home=tmp_path / "home", data=local_data(tmp_path),
                        component_image=KIND_IMAGE)
    submit(host, settings, PipelineParams(), "civicsense")
    sent = posted_spec(calls, "/runs")
    executors = sent["pipeline_spec"]["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {KIND_IMAGE}
    assert without_images([sent["pipeline_spec"]]) == without_images(
        documents(read_only_package / TRAINING)[:1])
    assert sent["pipeline_spec"]["pipelineInfo"]["description"] == SHIPPED_MARK
    assert snapshot(read_only_package) == before


def test_the_cli_submit_and_schedule_take_the_image(kfp_api, read_only_package, tmp_path,
                                                    monkeypatch):
    host, calls = kfp_api
    monkeypatch.setenv("CIVICSENSE_HOME", str(tmp_path / "home"))
    before = snapshot(read_only_package)
    result = runner.invoke(app, ["pipeline", "submit", "--host", host, "--data",
                                 local_data(tmp_path), "--image", KIND_IMAGE])
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("CIVICSENSE_COMPONENT_IMAGE", "reg:5000/civicsense-components:2")
    result = runner.invoke(app, ["schedule", "create", "--host", host, "--data",
                                 "gs://civicsense-data/semeval/"])
    assert result.exit_code == 0, result.output
    for path_part, image in (("/runs", KIND_IMAGE),
                             ("/recurringruns", "reg:5000/civicsense-components:2")):
        executors = posted_spec(calls, path_part)["pipeline_spec"]["deploymentSpec"]["executors"]
        assert {e["container"]["image"] for e in executors.values()} == {image}
    assert snapshot(read_only_package) == before


def test_no_shipped_yaml_is_a_one_line_error_and_fresh_compiles_elsewhere(
        kfp_api, tmp_path, monkeypatch):
    host, calls = kfp_api
    empty = tmp_path / "site" / "empty_pipelines"
    empty.mkdir(parents=True)
    (empty / "__init__.py").write_text("")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(empty.parent))
    monkeypatch.setattr(compiled, "PACKAGE", "empty_pipelines")
    monkeypatch.setenv("CIVICSENSE_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["pipeline", "submit", "--host", host])
    assert result.exit_code == 2 and calls == []
    assert result.output.strip() == ("error: the installed package ships no empty_pipelines/"
                                     "civicsense_training.yaml: run `civicsense pipeline "
                                     "compile`, or reinstall the package")
    before = snapshot(empty)
    job = create_schedule(host, Settings(data="gs://d/", component_image=KIND_IMAGE),
                          "0 0 3 * * *", "nightly", "civicsense", fresh=True)
    assert job.recurring_run_id == "rr-1"
    executors = posted_spec(calls, "/recurringruns")["pipeline_spec"]["deploymentSpec"][
        "executors"]
    assert {e["container"]["image"] for e in executors.values()} == {KIND_IMAGE}
    assert snapshot(empty) == before
