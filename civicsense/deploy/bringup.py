"""The cluster bring-up, end-to-end run and tear-down as typed plans: lists of steps built from
the tools' official install instructions and the versions pinned in civicsense.deploy.versions.
A plan is data; civicsense.deploy.execute prints it (dry run) or runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from civicsense.deploy import versions as v

Cluster = Literal["kind", "minikube"]
NAMESPACE, KFP_NAMESPACE, ISVC = "civicsense", "kubeflow", "civicsense-sentiment"
DATA_URI = "gs://civicsense-data/semeval/"
BUCKETS = ("civicsense-mlflow", "civicsense-monitoring", "civicsense-data")
LOCAL = "127.0.0.1"
KFP_PORT, MLFLOW_PORT, STORAGE_PORT, PREDICTOR_PORT = 8888, 5000, 9023, 8080
E2E_SAMPLE = 4000


@dataclass(frozen=True)
class Command:
    """A program run as is (never through a shell), with extra env."""

    title: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Background:
    """A long-running program (a port-forward) kept until the plan ends; ready when the port
    answers."""

    title: str
    argv: tuple[str, ...]
    port: int


@dataclass(frozen=True)
class Render:
    """Render an overlay, validate every object (check-manifests' rules), write it to `out`."""

    title: str
    overlay: str
    out: Path
    component_image: str
    serving_image: str
    token_file: Path


@dataclass(frozen=True)
class SinkToken:
    """Create the sink's shared token in `path` unless it exists (never printed)."""

    title: str
    path: Path


@dataclass(frozen=True)
class Upload:
    """Create the buckets on the in-cluster GCS emulator and copy a local folder under `uri`."""

    title: str
    emulator: str
    buckets: tuple[str, ...]
    source: Path
    uri: str


@dataclass(frozen=True)
class ServeAlias:
    """Point the InferenceService at the version an MLflow alias names (kubectl merge patch)."""

    title: str
    tracking_uri: str
    alias: str
    context: str
    kubectl: str = "kubectl"


@dataclass(frozen=True)
class CheckPipeline:
    """Validate what will be uploaded: the compiled pipeline (protobuf, strict) and the
    recurring run against it."""

    title: str


Step = Command | Background | Render | SinkToken | Upload | ServeAlias | CheckPipeline


@dataclass(frozen=True)
class ClusterConfig:
    """What the plans need: which cluster tool, the image tags `make images` built, where the
    bring-up keeps its files, and the data to train on."""

    component_image: str
    serving_image: str
    workdir: Path
    data: Path
    drift_data: Path
    cluster: Cluster = "kind"
    name: str = "civicsense"
    kubectl: str = "kubectl"
    python_bin: Path = field(default=Path(".venv/bin"))

    @property
    def context(self) -> str:
        """The kubeconfig context each tool creates: kind prefixes `kind-`, minikube does not."""
        return f"kind-{self.name}" if self.cluster == "kind" else self.name

    def kubectl_argv(self, *args: str) -> tuple[str, ...]:
        return (self.kubectl, "--context", self.context, *args)

    def tool(self, name: str) -> str:
        return str(self.python_bin / name)


def create_cluster(cfg: ClusterConfig) -> list[Step]:
    if cfg.cluster == "kind":
        return [Command(f"create the kind cluster ({v.KIND_VERSION}, {v.KIND_NODE_IMAGE})",
                        ("kind", "create", "cluster", "--name", cfg.name,
                         "--image", v.KIND_NODE_IMAGE, "--wait", "300s"))]
    return [Command(f"create the minikube cluster (Kubernetes {v.MINIKUBE_KUBERNETES})",
                    ("minikube", "start", "-p", cfg.name,
                     f"--kubernetes-version={v.MINIKUBE_KUBERNETES}", "--cpus=4",
                     "--memory=8g", "--cni=calico"))]   # calico: NetworkPolicy enforced


def load_images(cfg: ClusterConfig) -> list[Step]:
    steps = []
    for image in (cfg.component_image, cfg.serving_image):
        argv = (("kind", "load", "docker-image", image, "--name", cfg.name)
                if cfg.cluster == "kind" else ("minikube", "-p", cfg.name, "image", "load", image))
        steps.append(Command(f"load {image} into the cluster", argv))
    return steps


def _wait_deployments(cfg: ClusterConfig, namespace: str, timeout: str) -> Command:
    return Command(f"wait for every Deployment in {namespace}", cfg.kubectl_argv(
        "-n", namespace, "wait", "--for=condition=Available", "deployment", "--all",
        f"--timeout={timeout}"))


def install_platform(cfg: ClusterConfig) -> list[Step]:
    """cert-manager, KServe (Standard mode: no Knative) and Kubeflow Pipelines standalone, as
    their install pages say, at the pinned versions."""
    cert_manager, = v.CERT_MANAGER.urls
    kserve_crd, kserve = v.KSERVE.urls
    kfp_cluster, kfp_env = v.KFP.urls
    helm = ("helm", "--kube-context", cfg.context)
    return [
        Command(f"install cert-manager {v.CERT_MANAGER_VERSION}",
                cfg.kubectl_argv("apply", "-f", cert_manager)),
        _wait_deployments(cfg, "cert-manager", "300s"),
        Command(f"install KServe {v.KSERVE_VERSION}'s CRDs (Helm)", (
            *helm, "upgrade", "--install", "kserve-crd", kserve_crd, "--version",
            v.KSERVE_VERSION, "--namespace", "kserve", "--create-namespace", "--wait")),
        Command(f"install KServe {v.KSERVE_VERSION} in Standard mode: no Knative (Helm)", (
            *helm, "upgrade", "--install", "kserve", kserve, "--version", v.KSERVE_VERSION,
            "--namespace", "kserve", "--set", "kserve.controller.deploymentMode=Standard",
            "--wait", "--timeout", "10m")),
        Command(f"install Kubeflow Pipelines {v.KFP_VERSION} (cluster-scoped resources)",
                cfg.kubectl_argv("apply", "-k", kfp_cluster)),
        Command("wait for KFP's Application CRD",
                cfg.kubectl_argv("wait", "--for", "condition=established", "--timeout=60s",
                                 "crd/applications.app.k8s.io")),
        Command(f"install Kubeflow Pipelines {v.KFP_VERSION} (standalone)",
                cfg.kubectl_argv("apply", "-k", kfp_env)),
        _wait_deployments(cfg, KFP_NAMESPACE, "900s"),
    ]


def port_forward(cfg: ClusterConfig, namespace: str, service: str, local: int,
                 remote: int) -> Background:
    return Background(f"port-forward {namespace}/{service} to {LOCAL}:{local}",
                      cfg.kubectl_argv("-n", namespace, "port-forward", f"svc/{service}",
                                       f"{local}:{remote}", "--address", LOCAL), local)


def kfp_endpoint() -> str:
    return f"http://{LOCAL}:{KFP_PORT}"


def up_plan(cfg: ClusterConfig) -> list[Step]:
    """`make cluster-up`: cluster, platform, images, the local overlay, MLflow + object storage
    with the data, the compiled pipeline uploaded and the recurring run created."""
    rendered, token = cfg.workdir / "local.yaml", cfg.workdir / "sink-token"
    pipeline = "pipelines/civicsense_training.yaml"
    return [
        *create_cluster(cfg),
        *install_platform(cfg),
        *load_images(cfg),
        SinkToken("create the sink's shared token (kept out of the repository)", token),
        Render("render + validate the local overlay", "local", rendered,
               cfg.component_image, cfg.serving_image, token),
        Command("apply the local overlay", cfg.kubectl_argv(
            "apply", "--server-side", "--field-manager=civicsense", "-f", str(rendered))),
        _wait_deployments(cfg, NAMESPACE, "600s"),
        port_forward(cfg, NAMESPACE, "object-storage", STORAGE_PORT, STORAGE_PORT),
        Upload("buckets + training data on the in-cluster object storage",
               f"http://{LOCAL}:{STORAGE_PORT}", BUCKETS, cfg.data, DATA_URI),
        CheckPipeline("validate the compiled pipeline and the recurring run"),
        port_forward(cfg, KFP_NAMESPACE, "ml-pipeline", KFP_PORT, KFP_PORT),
        Command("upload the compiled pipeline", (
            cfg.tool("kfp"), "--endpoint", kfp_endpoint(), "pipeline", "create",
            "--pipeline-name", "civicsense-training", pipeline)),
        Command("create the recurring run (nightly retraining)", (
            cfg.tool("civicsense"), "schedule", "create", "--host", kfp_endpoint(),
            "--cron", "0 0 3 * * *", "--name", "civicsense-nightly", "--data", DATA_URI)),
    ]


def _training_run(cfg: ClusterConfig, name: str, gate_margin: float) -> Command:
    return Command(f"pipeline run {name} (gate_margin={gate_margin})", (
        cfg.tool("kfp"), "--endpoint", kfp_endpoint(), "run", "create",
        "--experiment-name", "civicsense-e2e", "--run-name", name,
        "--package-file", "pipelines/civicsense_training.yaml", "--watch", "--timeout", "3600",
        f"data_source={DATA_URI}", f"sample_size={E2E_SAMPLE}", f"gate_margin={gate_margin}"))


def e2e_plan(cfg: ClusterConfig) -> list[Step]:
    """`make cluster-e2e`: pipeline → register → serve → canary 10% → promote → rollback →
    drift → triggered run, against the cluster `up_plan` made."""
    tracking = f"http://{LOCAL}:{MLFLOW_PORT}"
    env = (("MLFLOW_TRACKING_URI", tracking), ("CIVICSENSE_K8S_CONTEXT", cfg.context),
           ("CIVICSENSE_K8S_NAMESPACE", NAMESPACE))
    isvc = f"inferenceservice/{ISVC}"
    ready = Command("wait for the InferenceService", cfg.kubectl_argv(
        "-n", NAMESPACE, "wait", "--for=condition=Ready", isvc, "--timeout=600s"))
    url = f"http://{LOCAL}:{PREDICTOR_PORT}"
    replay = Command("send 64 posts through the endpoint", (
        cfg.tool("civicsense"), "replay", "--url", url, "--limit", "64", str(cfg.data)))

    def rollout(verb: str, *extra: str) -> Command:
        return Command(f"rollout {verb} {' '.join(extra)}".strip(), (
            cfg.tool("civicsense"), "rollout", verb, "--mode", "standard", *extra), env)

    job = "civicsense-monitor-e2e"
    return [
        port_forward(cfg, KFP_NAMESPACE, "ml-pipeline", KFP_PORT, KFP_PORT),
        port_forward(cfg, NAMESPACE, "mlflow", MLFLOW_PORT, MLFLOW_PORT),
        _training_run(cfg, "e2e-champion", 0.0),
        ServeAlias("serve the registered champion", tracking, "champion", cfg.context,
                   cfg.kubectl),
        ready,
        port_forward(cfg, NAMESPACE, f"{ISVC}-predictor", PREDICTOR_PORT, 80),
        replay,
        _training_run(cfg, "e2e-challenger-1", -1.0),   # margin -1: always a challenger
        rollout("canary", "--percent", "10"), ready, replay,
        rollout("promote"), ready, replay,
        _training_run(cfg, "e2e-challenger-2", -1.0),
        rollout("canary", "--percent", "10"), ready,
        rollout("rollback"), ready, replay,
        Command("drift: send other-topic posts (TweetEval stance) through the endpoint", (
            cfg.tool("civicsense"), "replay", "--url", url, "--limit", "2000",
            str(cfg.drift_data))),
        Command("run the drift monitor now", cfg.kubectl_argv(
            "-n", NAMESPACE, "create", "job", "--from=cronjob/civicsense-monitor", job)),
        # Exit 1 (drift) makes the Job fail on purpose (manifests/base/monitoring).
        Command("wait for the monitor to report drift", cfg.kubectl_argv(
            "-n", NAMESPACE, "wait", "--for=condition=Failed", f"job/{job}",
            "--timeout=1800s")),
        Command("the monitor's decision", cfg.kubectl_argv("-n", NAMESPACE, "logs",
                                                           f"job/{job}")),
        Command("the triggered retraining run", (
            cfg.tool("kfp"), "--endpoint", kfp_endpoint(), "run", "list", "--max-size", "5")),
    ]


def down_plan(cfg: ClusterConfig) -> list[Step]:
    """`make cluster-down`: the cluster and everything in it, and the bring-up's files (the
    token, the rendered overlay)."""
    delete = (("kind", "delete", "cluster", "--name", cfg.name) if cfg.cluster == "kind"
              else ("minikube", "delete", "-p", cfg.name))
    return [Command(f"delete the {cfg.cluster} cluster", delete),
            Command("remove the bring-up's files", ("rm", "-rf", str(cfg.workdir)))]


PLANS = {"up": up_plan, "e2e": e2e_plan, "down": down_plan}
