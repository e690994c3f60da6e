"""The platform install matches the pinned releases' own install scripts: KServe v0.20.0's Helm
charts (kserve-crd, kserve-resources with Standard mode, the controller waited for, then
kserve-runtime-configs; no chart named `kserve`), Kubeflow Pipelines at a tag that exists
(2.17.0) with the standalone env/platform-agnostic kustomization; and a port-forward on a port
already forwarded replaces the old one."""

from __future__ import annotations

import sys

from civicsense.deploy import versions
from civicsense.deploy.bringup import Background, ClusterConfig, Command, install_platform
from civicsense.deploy.execute import describe, run_plan


def plan(tmp_path) -> list[str]:
    cfg = ClusterConfig("c:1", "s:1", tmp_path, tmp_path, tmp_path)
    return [describe(step) for step in install_platform(cfg)]


def position(lines: list[str], text: str) -> int:
    found, = [i for i, line in enumerate(lines) if text in line]
    return found


def test_kserve_is_installed_from_its_three_charts_in_the_quick_installs_order(tmp_path):
    lines = plan(tmp_path)
    repo = "oci://ghcr.io/kserve/charts/"
    crd = position(lines, f"upgrade --install kserve-crd {repo}kserve-crd --version v0.20.0")
    resources = position(lines, f"upgrade --install kserve-resources {repo}kserve-resources "
                                "--version v0.20.0")
    controller = position(lines, "wait --for=condition=Available "
                                 "deployment/kserve-controller-manager")
    runtimes = position(lines, f"upgrade --install kserve-runtime-configs "
                               f"{repo}kserve-runtime-configs --version v0.20.0")
    assert crd < resources < controller < runtimes
    assert not any(f"{repo}kserve " in line for line in lines)   # no such chart since v0.17
    assert ("--set kserve.version=v0.20.0 --set kserve.controller.deploymentMode=Standard"
            in lines[resources])
    assert ("--set kserve.servingruntime.enabled=true --set kserve.llmisvcConfigs.enabled=false"
            in lines[runtimes])
    assert all("--namespace kserve --create-namespace" in lines[i]
               for i in (crd, resources, runtimes))


def test_kfp_is_the_standalone_install_at_a_release_tag(tmp_path):
    assert versions.KFP_VERSION == "2.17.0"   # the newest 2.17 tag of kubeflow/pipelines
    lines = plan(tmp_path)
    scoped = position(lines, "manifests/kustomize/cluster-scoped-resources?ref=2.17.0")
    crd = position(lines, "crd/applications.app.k8s.io")
    env = position(lines, "manifests/kustomize/env/platform-agnostic?ref=2.17.0")
    assert scoped < crd < env < position(lines, "-n kubeflow wait")
    assert not any("env/dev" in line for line in lines)


def test_a_second_forward_on_a_port_replaces_the_first(tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.txt").write_text(name)

    def server(name: str) -> Background:
        return Background(name, (sys.executable, "-m", "http.server", str(port), "--bind",
                                 "127.0.0.1", "--directory", str(tmp_path / name)), port)

    fetch = Command("the second answers", (sys.executable, "-c", "import urllib.request as u; "
                                           f"u.urlopen('http://127.0.0.1:{port}/two.txt', "
                                           "timeout=5)"))
    run_plan([server("one"), server("two"), fetch], tmp_path, echo=lambda _: None)
