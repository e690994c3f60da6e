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
# KFP standalone: the backend release whose API the pinned kfp-server-api 2.17.3 client speaks.
KFP_VERSION = "2.17.3"
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
class Installer:
    """One platform component as its official instructions install it."""

    name: str
    version: str
    urls: tuple[str, ...]


CERT_MANAGER = Installer("cert-manager", CERT_MANAGER_VERSION, (
    "https://github.com/cert-manager/cert-manager/releases/download/"
    f"{CERT_MANAGER_VERSION}/cert-manager.yaml",))
# KServe's Helm charts (its install guide's method without a clone): CRDs, then the controller.
KSERVE = Installer("kserve", KSERVE_VERSION, ("oci://ghcr.io/kserve/charts/kserve-crd",
                                              "oci://ghcr.io/kserve/charts/kserve"))
# `kubectl apply -k` of KFP's standalone kustomizations at the release tag (its install page;
# env/platform-agnostic is the page's fallback when pods crash-loop on a laptop cluster).
KFP = Installer("kubeflow-pipelines", KFP_VERSION, (
    "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources"
    f"?ref={KFP_VERSION}",
    f"github.com/kubeflow/pipelines/manifests/kustomize/env/dev?ref={KFP_VERSION}"))
