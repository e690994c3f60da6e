"""The cluster bring-up, end-to-end run and tear-down as typed plans: lists of steps built from
the tools' official install instructions and the versions pinned in civicsense.deploy.versions.
A plan is data; civicsense.deploy.execute prints it (dry run) or runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from civicsense.deploy import versions as v
from civicsense.deploy.mlflow_auth import MlflowCredentials
from civicsense.deploy.render import MANIFESTS
from civicsense.orchestration.compiled import TRAINING
from civicsense.rollout.kserve_names import SERVICE_PORT, main_service

Cluster = Literal["kind", "minikube"]
NAMESPACE, KFP_NAMESPACE, ISVC = "civicsense", "kubeflow", "civicsense-sentiment"
DATA_URI = "gs://civicsense-data/semeval/"
BUCKETS = ("civicsense-mlflow", "civicsense-monitoring", "civicsense-data")
LOCAL = "127.0.0.1"
KFP_PORT, MLFLOW_PORT, STORAGE_PORT, PREDICTOR_PORT = 8888, 5000, 9023, 8080
E2E_SAMPLE = 4000
SERVED = MANIFESTS / "base" / "serving" / "inferenceservice.yaml"


@dataclass(frozen=True)
class Command:
    """A program run as is (never through a shell), with extra env (+ MLflow's credentials from
    the file `mlflow_auth`, read when it runs, never printed)."""

    title: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    mlflow_auth: Path | None = None


@dataclass(frozen=True)
class Background:
    """A long-running program (a port-forward) kept until the plan ends; ready when the port
    answers. A later one on the same port replaces it (a port-forward ends with its pod)."""

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
    mlflow_auth_file: Path | None = None   # adds MLflow's credentials Secrets


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
    mlflow_auth: Path | None = None


@dataclass(frozen=True)
class CompilePipelines:
    """Compile the training and labeling pipelines into `directory` with `image` in every
    executor (`civicsense pipeline compile --image … --output-dir …`), then validate them
    (protobuf, strict; every executor `image`) and the recurring runs against them. The
    committed pipelines/*.yaml run the default image, which the cluster may not have."""

    title: str
    image: str
    directory: Path


Step = (Command | Background | Render | SinkToken | MlflowCredentials | Upload | ServeAlias
        | CompilePipelines)


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

    @property
    def pipelines(self) -> Path:
        """Where the plans compile the pipelines with `component_image`."""
        return self.workdir / "pipelines"

    @property
    def mlflow_auth(self) -> Path:   # MLflow's credentials (civicsense.deploy.mlflow_auth)
        return self.workdir / "mlflow-auth"

    @property
    def training_package(self) -> str:
        """The compiled training pipeline the plans upload and run."""
        return str(self.pipelines / TRAINING)


def compile_pipelines(cfg: ClusterConfig) -> CompilePipelines:
    return CompilePipelines(f"compile the pipelines with {cfg.component_image}; validate them "
                            "and the recurring runs", cfg.component_image, cfg.pipelines)


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


def helm_install(cfg: ClusterConfig, chart: v.HelmChart, namespace: str,
                 timeout: str = "10m") -> Command:
    """`helm upgrade --install` of one pinned chart, waiting for its resources."""
    values = [arg for key, value in chart.values for arg in ("--set", f"{key}={value}")]
    return Command(f"install {chart.release} {chart.version} (Helm)", (
        "helm", "--kube-context", cfg.context, "upgrade", "--install", chart.release,
        chart.chart, "--version", chart.version, "--namespace", namespace, "--create-namespace",
        *values, "--wait", "--timeout", timeout))


def install_platform(cfg: ClusterConfig) -> list[Step]:
    """cert-manager, KServe (Standard mode: no Knative) and Kubeflow Pipelines standalone, in the
    order and with the waits their own install scripts use at the pinned versions
    (civicsense.deploy.versions cites them)."""
    cert_manager, = v.CERT_MANAGER.urls
    crd, resources, runtimes = v.KSERVE_CHARTS
    kfp_cluster, kfp_env = v.KFP.urls
    return [
        Command(f"install cert-manager {v.CERT_MANAGER_VERSION}",
                cfg.kubectl_argv("apply", "-f", cert_manager)),
        _wait_deployments(cfg, "cert-manager", "300s"),
        helm_install(cfg, crd, v.KSERVE_NAMESPACE),
        helm_install(cfg, resources, v.KSERVE_NAMESPACE),
        Command(f"wait for {v.KSERVE_CONTROLLER}", cfg.kubectl_argv(
            "-n", v.KSERVE_NAMESPACE, "wait", "--for=condition=Available",
            f"deployment/{v.KSERVE_CONTROLLER}", "--timeout=300s")),
        helm_install(cfg, runtimes, v.KSERVE_NAMESPACE),
        Command(f"install Kubeflow Pipelines {v.KFP_VERSION} (cluster-scoped resources)",
                cfg.kubectl_argv("apply", "-k", kfp_cluster)),
        Command("wait for KFP's Application CRD",
                cfg.kubectl_argv("wait", "--for", "condition=established", "--timeout=60s",
                                 "crd/applications.app.k8s.io")),
        Command(f"install Kubeflow Pipelines {v.KFP_VERSION} (standalone, platform-agnostic)",
                cfg.kubectl_argv("apply", "-k", kfp_env)),
        _wait_deployments(cfg, KFP_NAMESPACE, "900s"),
    ]


def port_forward(cfg: ClusterConfig, namespace: str, service: str, local: int,
                 remote: int) -> Background:
    return Background(f"port-forward {namespace}/{service} to {LOCAL}:{local}",
                      cfg.kubectl_argv("-n", namespace, "port-forward", f"svc/{service}",
                                       f"{local}:{remote}", "--address", LOCAL), local)


def predictor_service(isvc: dict | None = None) -> str:
    """The main predictor's Service of the served InferenceService, named as KServe names it
    (civicsense.rollout.kserve_names); the rollout keeps that name at every step."""
    return main_service(isvc if isvc is not None else yaml.safe_load(SERVED.read_text()))


def kfp_endpoint() -> str:
    return f"http://{LOCAL}:{KFP_PORT}"


def up_plan(cfg: ClusterConfig) -> list[Step]:
    """`make cluster-up`: cluster, platform, images, the local overlay, MLflow + object storage
    with the data, the pipeline compiled with the component image, uploaded, and the recurring
    run created (its steps in that image too)."""
    rendered, token = cfg.workdir / "local.yaml", cfg.workdir / "sink-token"
    return [
        *create_cluster(cfg),
        *install_platform(cfg),
        *load_images(cfg),
        SinkToken("create the sink's shared token (kept out of the repository)", token),
        MlflowCredentials("create MLflow's credentials (kept out of the repository)",
                          cfg.mlflow_auth),
        Render("render + validate the local overlay", "local", rendered,
               cfg.component_image, cfg.serving_image, token, cfg.mlflow_auth),
        Command("apply the local overlay", cfg.kubectl_argv(
            "apply", "--server-side", "--field-manager=civicsense", "-f", str(rendered))),
        _wait_deployments(cfg, NAMESPACE, "600s"),
        port_forward(cfg, NAMESPACE, "object-storage", STORAGE_PORT, STORAGE_PORT),
        Upload("buckets + training data on the in-cluster object storage",
               f"http://{LOCAL}:{STORAGE_PORT}", BUCKETS, cfg.data, DATA_URI),
        compile_pipelines(cfg),
        port_forward(cfg, KFP_NAMESPACE, "ml-pipeline", KFP_PORT, KFP_PORT),
        Command("upload the compiled pipeline", (
            cfg.tool("kfp"), "--endpoint", kfp_endpoint(), "pipeline", "create",
            "--pipeline-name", "civicsense-training", cfg.training_package)),
        Command("create the recurring run (nightly retraining)", (
            cfg.tool("civicsense"), "schedule", "create", "--host", kfp_endpoint(),
            "--cron", "0 0 3 * * *", "--name", "civicsense-nightly", "--data", DATA_URI,
            "--image", cfg.component_image)),
    ]


def _training_run(cfg: ClusterConfig, name: str, gate_margin: float) -> Command:
    return Command(f"pipeline run {name} (gate_margin={gate_margin})", (
        cfg.tool("kfp"), "--endpoint", kfp_endpoint(), "run", "create",
        "--experiment-name", "civicsense-e2e", "--run-name", name,
        "--package-file", cfg.training_package, "--watch", "--timeout", "3600",
        f"data_source={DATA_URI}", f"sample_size={E2E_SAMPLE}", f"gate_margin={gate_margin}"))


def e2e_plan(cfg: ClusterConfig) -> list[Step]:
    """`make cluster-e2e`: pipeline → register → serve → canary 10% → promote → rollback →
    drift → triggered run, against the cluster `up_plan` made; the runs use the pipeline
    compiled with the component image (again: this image, this tree)."""
    tracking = f"http://{LOCAL}:{MLFLOW_PORT}"
    env = (("MLFLOW_TRACKING_URI", tracking), ("CIVICSENSE_K8S_CONTEXT", cfg.context),
           ("CIVICSENSE_K8S_NAMESPACE", NAMESPACE))
    isvc, service = f"inferenceservice/{ISVC}", predictor_service()
    ready = Command("wait for the InferenceService", cfg.kubectl_argv(
        "-n", NAMESPACE, "wait", "--for=condition=Ready", isvc, "--timeout=600s"))
    # After each change of the main predictor: its Deployment (named like its Service) rolled
    # out, then a fresh port-forward (the previous one was bound to a pod that is gone).
    serving = [ready, Command(f"wait for deployment/{service} to roll out", cfg.kubectl_argv(
                   "-n", NAMESPACE, "rollout", "status", f"deployment/{service}",
                   "--timeout=600s")),
               port_forward(cfg, NAMESPACE, service, PREDICTOR_PORT, SERVICE_PORT)]
    url = f"http://{LOCAL}:{PREDICTOR_PORT}"
    replay = Command("send 64 posts through the endpoint", (
        cfg.tool("civicsense"), "replay", "--url", url, "--limit", "64", str(cfg.data)))

    def rollout(verb: str, *extra: str) -> Command:
        mode = ("--mode", "standard") if verb == "canary" else ()
        return Command(f"rollout {verb} {' '.join(extra)}".strip(), (
            cfg.tool("civicsense"), "rollout", verb, *mode, *extra), env, cfg.mlflow_auth)

    job = "civicsense-monitor-e2e"
    return [
        compile_pipelines(cfg),
        port_forward(cfg, KFP_NAMESPACE, "ml-pipeline", KFP_PORT, KFP_PORT),
        port_forward(cfg, NAMESPACE, "mlflow", MLFLOW_PORT, MLFLOW_PORT),
        _training_run(cfg, "e2e-champion", 0.0),
        ServeAlias("serve the registered champion", tracking, "champion", cfg.context,
                   cfg.kubectl, cfg.mlflow_auth),
        *serving, replay,
        _training_run(cfg, "e2e-challenger-1", -1.0),   # margin -1: always a challenger
        # Standard mode at KServe v0.20.0: the canary gets replicas, not traffic (docs/cluster.md)
        rollout("canary", "--percent", "10"), ready, rollout("status"),
        rollout("promote"), *serving, replay, rollout("status"),
        _training_run(cfg, "e2e-challenger-2", -1.0),
        rollout("canary", "--percent", "10"), ready,
        rollout("rollback"), *serving, replay, rollout("status"),
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


def plans_text(cfg: ClusterConfig | None = None) -> str:
    """Every command line of every plan, one a line (what check-manifests reads the names the
    bring-up uses from)."""
    cfg = cfg or ClusterConfig("civicsense-components:check", "civicsense-serving:check",
                               Path(".civicsense/cluster"), Path("data"), Path("drift"))
    return "\n".join(" ".join(step.argv) for plan in PLANS.values() for step in plan(cfg)
                     if isinstance(step, Command | Background))
