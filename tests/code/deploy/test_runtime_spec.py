"""The ClusterServingRuntime → docker-run translation (no engine needed): found by kind, every
declared arg, env var, port, probe, limit and security setting carried over."""

from __future__ import annotations

import pytest
import yaml

from civicsense.deploy.runtime_spec import (
    RuntimeSpecError,
    cpu_quantity,
    docker_run_args,
    find_runtime,
    image_user_is_root,
    memory_quantity,
    runtime_container,
)
from civicsense.settings import PROJECT_ROOT


def test_the_runtime_is_found_by_kind_wherever_it_lives():
    doc, path = find_runtime(PROJECT_ROOT / "manifests")
    assert doc["kind"] == "ClusterServingRuntime" and path.suffix in {".yaml", ".yml"}


def test_none_or_two_different_runtimes_is_an_error(tmp_path):
    with pytest.raises(RuntimeSpecError, match="found 0"):
        find_runtime(tmp_path)
    doc, _ = find_runtime(PROJECT_ROOT / "manifests")
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(doc))
    doc["spec"]["containers"][0]["args"].append("--extra")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "b.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(RuntimeSpecError, match="found 2"):
        find_runtime(tmp_path)


def test_every_declared_setting_reaches_the_container():
    doc, _ = find_runtime(PROJECT_ROOT / "manifests")
    declared = doc["spec"]["containers"][0]
    spec = runtime_container(doc, "civicsense-sentiment")
    run = docker_run_args(spec, "img:tag", 18080, "vol", {"CIVICSENSE_MODEL_VERSION": "3"})
    assert run["command"] == [a.replace("{{.Name}}", "civicsense-sentiment")
                              for a in declared["args"]]
    assert {e["name"]: e["value"] for e in declared["env"]}.items() <= run["environment"].items()
    assert run["environment"]["CIVICSENSE_MODEL_VERSION"] == "3"
    port = declared["ports"][0]["containerPort"]
    assert run["ports"] == {f"{port}/tcp": ("127.0.0.1", 18080)}
    assert declared["readinessProbe"]["httpGet"]["path"] in run["healthcheck"]["test"][-1]
    limits = declared["resources"]["limits"]
    assert run["nano_cpus"] == cpu_quantity(limits["cpu"]) * 10**9
    assert run["mem_limit"] == memory_quantity(limits["memory"])
    assert run["mounts"][0]["Target"] == "/mnt/models" and run["mounts"][0]["ReadOnly"]
    assert run["security_opt"] == ["no-new-privileges"]


@pytest.mark.parametrize(("text", "cores"), [("2", 2.0), ("500m", 0.5), (1, 1.0)])
def test_cpu_quantities(text, cores):
    assert cpu_quantity(text) == cores


@pytest.mark.parametrize(("text", "size"), [("2Gi", 2 * 2**30), ("512Mi", 512 * 2**20),
                                            ("1G", 10**9), ("100", 100)])
def test_memory_quantities(text, size):
    assert memory_quantity(text) == size


def test_an_unknown_memory_unit_is_an_error():
    with pytest.raises(RuntimeSpecError, match="memory quantity"):
        memory_quantity("2 gigs")


@pytest.mark.parametrize(("user", "root"), [("", True), ("root", True), ("0:0", True),
                                            ("1000:1000", False), ("civicsense", False)])
def test_root_images_are_recognised(user, root):
    assert image_user_is_root({"Config": {"User": user}}) is root
