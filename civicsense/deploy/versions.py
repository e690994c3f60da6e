"""Every version the cluster path pins, in one place: the cluster tools, the platform components,
the Kubernetes version manifests are validated against, and KServe's CRDs with their sha256."""

from __future__ import annotations

from dataclasses import dataclass

# Kubernetes: kind's node image for this kind release, and the version kubernetes-validate checks
# against (the same minor as the node image, so CI validates what the cluster runs).
KIND_VERSION = "v0.29.0"
KIND_NODE_IMAGE = "kindest/node:v1.33.1"
MINIKUBE_KUBERNETES = "v1.33.1"
KUBERNETES_VERSION = "1.33"

CERT_MANAGER_VERSION = "v1.17.2"
KSERVE_VERSION = "v0.20.0"
# KFP standalone: the newest backend release, tag 2.17.0 of kubeflow/pipelines (`git tag -l
# '2.17*'` lists 2.17.0 only; the kfp-server-api 2.17.3 client on PyPI has no backend tag of its
# own), the release of the kfp 2.17.0 SDK that compiles the pipeline.
KFP_VERSION = "2.17.0"
# The MLflow tracking server runs from the component image: the same MLflow as every client.
MLFLOW_VERSION = "3.17.2"
# Label Studio (issue 14's labeling queue): the same release the local venv installs from PyPI
# (mk/labels.mk), so tasks and exports have one format on both sides.
LABEL_STUDIO_VERSION = "1.23.2"
LABEL_STUDIO_IMAGE = f"heartexlabs/label-studio:{LABEL_STUDIO_VERSION}"

# KServe's released CRDs (config/crd/full at the tag), checked by sha256 wherever they come from.
KSERVE_CRD_BASE_URL = (f"https://raw.githubusercontent.com/kserve/kserve/{KSERVE_VERSION}/"
                       "config/crd/full")
KSERVE_CRD_SHA256 = {
    "serving.kserve.io_inferenceservices.yaml":
        "57c3bf13f77de94678bf2ae3748056ec071ad2b9e88d6a28f44fb4710758fcff",
    "serving.kserve.io_servingruntimes.yaml":
        "380a3e1e1444cef9b8b88819596692728868205a2147dc66423be469a4a7bbb1",
    "serving.kserve.io_clusterservingruntimes.yaml":
        "c6f6bbb1b4b11afd1e38bd6d7255a8795b86efa2b7d14946ccff9d23592e6846",
}


@dataclass(frozen=True)
class HelmChart:
    """One Helm release of a chart from an OCI registry, with the values set on install."""

    release: str
    chart: str
    version: str
    values: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Installer:
    """One platform component as its official instructions install it."""

    name: str
    version: str
    urls: tuple[str, ...]


CERT_MANAGER = Installer("cert-manager", CERT_MANAGER_VERSION, (
    "https://github.com/cert-manager/cert-manager/releases/download/"
    f"{CERT_MANAGER_VERSION}/cert-manager.yaml",))
# KServe's Helm charts, as KServe v0.20.0's own Standard-mode quick install installs them
# (hack/setup/infra/manage.kserve-helm.sh at the tag; hack/setup/quick-install/definitions/
# kserve-standard/kserve-standard-mode-full-install.definition sets DEPLOYMENT_MODE=Standard and
# INSTALL_RUNTIMES=true): kserve-crd (:158, :316-324), then kserve-resources with
# kserve.version and kserve.controller.deploymentMode (:159, :244-246, :346-355), then wait for
# kserve-controller-manager (:161, :404-406), then kserve-runtime-configs, the
# ClusterServingRuntimes (:133, :411-421). The controller's chart (charts/kserve-resources) was
# named `kserve` up to v0.16.0 and `kserve-resources` from v0.17.0 (its Chart.yaml `name:`); at
# v0.20.0 every chart above is version v0.20.0.
KSERVE_NAMESPACE = "kserve"          # hack/setup/global-vars.env: KSERVE_NAMESPACE
KSERVE_CONTROLLER = "kserve-controller-manager"
KSERVE_CHART_REPO = "oci://ghcr.io/kserve/charts"
KSERVE_DEPLOYMENT_MODE = "Standard"   # kind: no Knative (pkg/constants/constants.go:565)
KSERVE_CHARTS = (
    HelmChart("kserve-crd", f"{KSERVE_CHART_REPO}/kserve-crd", KSERVE_VERSION),
    HelmChart("kserve-resources", f"{KSERVE_CHART_REPO}/kserve-resources", KSERVE_VERSION, (
        ("kserve.version", KSERVE_VERSION),
        ("kserve.controller.deploymentMode", KSERVE_DEPLOYMENT_MODE))),
    HelmChart("kserve-runtime-configs", f"{KSERVE_CHART_REPO}/kserve-runtime-configs",
              KSERVE_VERSION, (("kserve.version", KSERVE_VERSION),
                               ("kserve.servingruntime.enabled", "true"),
                               ("kserve.llmisvcConfigs.enabled", "false"))),
)
# Kubeflow Pipelines standalone, `kubectl apply -k` at the release tag, as KFP's own kind target
# does at that tag (backend/Makefile:85-104, `kind-cluster-agnostic`): cluster-scoped-resources,
# wait for the Application CRD, then env/platform-agnostic (AGENTS.md:128-139 and :162-167: the
# standalone, single-user install). Not env/dev (env/dev/kustomization.yaml:9,11-33: the GCP
# inverse-proxy agent and `:master` images) nor env/dev-kind (the API server at 0 replicas for
# a debugger on the host, backend/README.md:99).
KFP = Installer("kubeflow-pipelines", KFP_VERSION, (
    "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources"
    f"?ref={KFP_VERSION}",
    "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic"
    f"?ref={KFP_VERSION}"))
