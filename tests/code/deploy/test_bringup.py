"""The bring-up plans: built from the pinned versions, in an order that can work (CRDs before
the objects that need them), for kind or minikube; a dry run prints everything and renders and
validates the overlay without running a single command; a real run stops at the first failure
and ends what it started."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from civicsense.cli.app import app
from civicsense.deploy import versions
from civicsense.deploy.bringup import (
    Background,
    ClusterConfig,
    Command,
    Render,
    Upload,
    down_plan,
    e2e_plan,
    up_plan,
)
from civicsense.deploy.execute import StepFailed, describe, run_plan, upload
from civicsense.settings import MIRROR_DATA

pytestmark = pytest.mark.integration  # real processes, seconds each: `make test`, not test-fast

IMAGES = {"component_image": "civicsense-components:0.1.0-abc1234",
          "serving_image": "civicsense-serving:0.1.0-abc1234"}


def config(tmp_path: Path, cluster: str = "kind", kubectl: str = "kubectl") -> ClusterConfig:
    return ClusterConfig(**IMAGES, workdir=tmp_path / "cluster", data=MIRROR_DATA,
                         drift_data=MIRROR_DATA.parent / "tweeteval-stance", cluster=cluster,
                         kubectl=kubectl)


def lines(steps) -> list[str]:
    return [describe(step) for step in steps]


def index_of(steps, text: str) -> int:
    found = [i for i, line in enumerate(lines(steps)) if text in line]
    assert found, text
    return found[0]


def test_up_installs_the_pinned_versions_in_an_order_that_works(tmp_path):
    steps = up_plan(config(tmp_path))
    text = "\n".join(lines(steps))
    for pinned in (versions.KIND_NODE_IMAGE, f"cert-manager/releases/download/"
                   f"{versions.CERT_MANAGER_VERSION}/",
                   f"oci://ghcr.io/kserve/charts/kserve-resources --version "
                   f"{versions.KSERVE_VERSION}",
                   f"cluster-scoped-resources?ref={versions.KFP_VERSION}",
                   f"env/platform-agnostic?ref={versions.KFP_VERSION}"):
        assert pinned in text
    apply = index_of(steps, "apply --server-side --field-manager=civicsense")
    assert isinstance(steps[apply - 1], Render)   # validated right before it is applied
    assert index_of(steps, "charts/kserve-crd") < apply   # the CRDs of our KServe objects
    assert index_of(steps, "env/platform-agnostic") < apply   # the kubeflow namespace of our Role
    assert index_of(steps, "kind load docker-image civicsense-serving:0.1.0-abc1234") < apply
    assert index_of(steps, "pipeline create") < index_of(steps, "schedule create")
    assert all(step.argv[:3] == ("kubectl", "--context", "kind-civicsense")
               for step in steps if isinstance(step, Command | Background)
               and step.argv[0] == "kubectl")


def test_minikube_gets_its_own_commands_and_context(tmp_path):
    steps = up_plan(config(tmp_path, "minikube"))
    text = "\n".join(lines(steps))
    kubernetes = versions.MINIKUBE_KUBERNETES
    assert f"minikube start -p civicsense --kubernetes-version={kubernetes}" in text
    assert "minikube -p civicsense image load civicsense-components:0.1.0-abc1234" in text
    assert "kind " not in text and "--context civicsense " in text
    assert lines(down_plan(config(tmp_path, "minikube")))[0] == "minikube delete -p civicsense"


def test_e2e_walks_the_whole_path_in_order(tmp_path):
    titles = [step.title for step in e2e_plan(config(tmp_path))]
    order = ["pipeline run e2e-champion", "serve the registered champion",
             "rollout canary --percent 10", "rollout promote", "rollout canary --percent 10",
             "rollout rollback", "drift: send", "run the drift monitor now",
             "the triggered retraining run"]
    positions, start = [], 0
    for title in order:
        start = next(i for i in range(start, len(titles)) if titles[i].startswith(title))
        positions.append(start)
        start += 1
    assert positions == sorted(positions)


def test_a_dry_run_runs_nothing_but_renders_and_validates(tmp_path):
    cfg = config(tmp_path, kubectl=str(tmp_path / "no-such-kubectl"))
    printed = []
    count = run_plan(up_plan(cfg), tmp_path / "crds", dry_run=True, echo=printed.append)
    assert count == len(up_plan(cfg))
    rendered = (cfg.workdir / "local.yaml").read_text()
    assert "civicsense-components:0.1.0-abc1234" in rendered
    assert "REPLACE_WITH_SINK_TOKEN" in rendered   # never the stand-in token
    assert not (cfg.workdir / "sink-token").exists()
    assert any("objects rendered and valid" in line for line in printed)
    assert any("valid: civicsense-training, V2beta1RecurringRun" in line for line in printed)


def test_a_real_run_writes_the_token_renders_with_it_and_stops_at_the_first_failure(tmp_path):
    cfg = config(tmp_path)
    from civicsense.deploy.bringup import SinkToken

    token = cfg.workdir / "sink-token"
    steps = [SinkToken("token", token),
             Render("render", "local", cfg.workdir / "local.yaml", **IMAGES, token_file=token),
             Command("fails", (sys.executable, "-c", "raise SystemExit(3)")),
             Command("never", (sys.executable, "-c", f"open({str(tmp_path / 'ran')!r}, 'w')"))]
    with pytest.raises(StepFailed, match=r"step 3 \(fails\) failed: exit code 3"):
        run_plan(steps, tmp_path / "crds", echo=lambda _: None)
    assert not (tmp_path / "ran").exists()
    assert oct(token.stat().st_mode)[-3:] == "600" and len(token.read_text()) == 64
    assert f"token: {token.read_text()}" in (cfg.workdir / "local.yaml").read_text()


def test_background_steps_wait_for_their_port_and_end_with_the_plan(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = Background("serve", (sys.executable, "-m", "http.server", str(port),
                                  "--bind", "127.0.0.1"), port)
    check = Command("reach it", (sys.executable, "-c", "import urllib.request as u; "
                                 f"u.urlopen('http://127.0.0.1:{port}/', timeout=5)"))
    run_plan([server, check], tmp_path, echo=lambda _: None)
    with socket.socket() as probe, pytest.raises(OSError):
        probe.settimeout(2)
        probe.connect(("127.0.0.1", port))   # the plan ended the server


def test_upload_creates_buckets_and_copies_the_data_to_the_emulator(gcs, tmp_path, monkeypatch):
    import os

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    emulator = os.environ["STORAGE_EMULATOR_HOST"]
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")   # the step needs no env of its own
    source = tmp_path / "data"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("1\tpositive\tgood\n")
    (source / "sub" / "b.txt").write_text("2\tnegative\tbad\n")
    step = Upload("up", emulator, ("civicsense-data", "civicsense-monitoring"), source,
                  "gs://civicsense-data/semeval/")
    upload(step)
    upload(step)   # again: buckets already there is fine
    client = storage.Client(project="civicsense", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": emulator})
    names = sorted(b.name for b in client.list_blobs("civicsense-data"))
    assert names == ["semeval/a.txt", "semeval/sub/b.txt"]
    assert {b.name for b in client.list_buckets()} >= {"civicsense-data", "civicsense-monitoring"}


def test_the_cli_dry_runs_and_refuses_an_unknown_cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("CIVICSENSE_HOME", str(tmp_path / "home"))
    args = ["--component-image", IMAGES["component_image"], "--serving-image",
            IMAGES["serving_image"]]
    result = CliRunner().invoke(app, ["deploy", "down", "--dry-run", *args])
    assert result.exit_code == 0, result.output
    assert "kind delete cluster --name civicsense" in result.output
    assert "down: 2 steps printed (dry run)" in result.output
    result = CliRunner().invoke(app, ["deploy", "up", "--cluster", "k3s", "--dry-run", *args])
    assert result.exit_code == 2 and "kind or minikube" in result.output


def test_the_cli_checks_and_renders(tmp_path, monkeypatch):
    monkeypatch.setenv("CIVICSENSE_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["deploy", "check", "--overlay", "gke"])
    assert result.exit_code == 0, result.output
    assert ("ok   overlay gke: InferenceService/civicsense/civicsense-sentiment (kserve CRD + "
            "KServe webhooks)") in result.output
    (tmp_path / "t").write_text("b" * 40)
    result = CliRunner().invoke(app, ["deploy", "render", "local", "--sink-token-file",
                                      str(tmp_path / "t"), "-o", str(tmp_path / "out.yaml")])
    assert result.exit_code == 0, result.output
    assert "token: " + "b" * 40 in (tmp_path / "out.yaml").read_text()
    assert "token=" not in (tmp_path / "out.yaml").read_text()
    result = CliRunner().invoke(app, ["deploy", "render", "aws"])
    assert result.exit_code == 2 and "no overlay 'aws'" in result.output


def test_serve_alias_patches_the_inference_service_with_the_champions_artifacts(tmp_path,
                                                                                monkeypatch):
    """A real SQLite registry; kubectl is a stand-in that records its arguments (no cluster
    can run here)."""
    import json
    import stat

    from mlflow import MlflowClient

    from civicsense.deploy.bringup import ServeAlias
    from civicsense.deploy.execute import serve_alias

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking, tracking)
    client.create_registered_model("civicsense-sentiment")
    uri = "gs://civicsense-mlflow/artifacts/1/models/m-abc/artifacts"
    client.create_model_version("civicsense-sentiment", uri)
    client.set_registered_model_alias("civicsense-sentiment", "champion", "1")
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f"#!{sys.executable}\nimport json, sys\n"
                       f"open({str(tmp_path / 'argv.json')!r}, 'w').write(json.dumps("
                       "sys.argv[1:]))\n")
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IEXEC)
    step = ServeAlias("serve", tracking, "champion", "kind-civicsense", str(kubectl))
    serve_alias(step)
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[:7] == ["--context", "kind-civicsense", "-n", "civicsense", "patch",
                        "inferenceservice/civicsense-sentiment", "--type"]
    model = json.loads(argv[-1])["spec"]["predictor"]["model"]
    assert model["storageUri"] == uri
    assert {"name": "CIVICSENSE_MODEL_VERSION", "value": "1"} in model["env"]
    with pytest.raises(StepFailed, match="no 'challenger' alias"):
        serve_alias(ServeAlias("serve", tracking, "challenger", "kind-civicsense",
                               str(kubectl)))


def test_mlflow_credentials_are_made_rendered_and_handed_to_the_host_side_clients(tmp_path):
    from civicsense.deploy.bringup import ServeAlias
    from civicsense.deploy.mlflow_auth import MlflowCredentials, read_auth

    cfg = config(tmp_path)
    steps = up_plan(cfg)
    made = next(i for i, s in enumerate(steps) if isinstance(s, MlflowCredentials))
    render_step, = [s for s in steps if isinstance(s, Render)]
    assert made < steps.index(render_step) and render_step.mlflow_auth_file == cfg.mlflow_auth
    e2e = e2e_plan(cfg)
    clients = [s for s in e2e if isinstance(s, ServeAlias) or (
        isinstance(s, Command) and "MLFLOW_TRACKING_URI" in dict(s.env))]
    assert clients and all(s.mlflow_auth == cfg.mlflow_auth for s in clients)
    # a real run: the file (600), the Secrets in the rendered overlay, the env of a client
    out = tmp_path / "env.txt"
    client = Command("client", (sys.executable, "-c", "import os; open(" + repr(str(out)) +
                                ", 'w').write(os.environ['MLFLOW_TRACKING_PASSWORD'])"),
                     mlflow_auth=cfg.mlflow_auth)
    token = cfg.workdir / "sink-token"
    from civicsense.deploy.bringup import SinkToken
    run_plan([SinkToken("token", token), steps[made], render_step, client], tmp_path / "crds",
             echo=lambda _: None)
    auth = read_auth(cfg.mlflow_auth)
    assert oct(cfg.mlflow_auth.stat().st_mode)[-3:] == "600"
    rendered = (cfg.workdir / "local.yaml").read_text()
    secrets = [o for o in yaml.safe_load_all(rendered) if o["kind"] == "Secret"
               and o["metadata"]["name"] == "civicsense-mlflow-auth"]
    assert [s["stringData"]["password"] for s in secrets] == [auth.password] * 2
    assert out.read_text() == auth.password
    assert auth.password not in "\n".join(lines([client, render_step, steps[made]]))


def test_a_dry_run_writes_no_mlflow_credentials(tmp_path):
    cfg = config(tmp_path, kubectl=str(tmp_path / "no-such-kubectl"))
    run_plan(up_plan(cfg), tmp_path / "crds", dry_run=True, echo=lambda _: None)
    assert not cfg.mlflow_auth.exists()
    rendered = (cfg.workdir / "local.yaml").read_text()
    assert "civicsense-mlflow-auth" in rendered   # referenced by the pods, not made
    assert not [o for o in yaml.safe_load_all(rendered) if o["kind"] == "Secret"
                and o["metadata"]["name"] == "civicsense-mlflow-auth"]
    assert "check-manifests-stand-in" not in rendered
