"""MLflow runs its basic-auth app with its admin and CSRF key from the Secret and its user store
on the PVC; every MLflow client (pods, the pipeline's steps) reads the credentials from that
Secret; the Secrets are rendered from a credentials file, never with placeholders; the server
refuses the example's placeholders at start."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import yaml

from civicsense.deploy.check import CHECK_MLFLOW_AUTH, Report, check_object
from civicsense.deploy.mlflow_auth import (
    AUTH_SECRET,
    AuthFileError,
    MlflowAuth,
    auth_problems,
    package_problems,
    pipeline_problems,
    read_auth,
    secret_objects,
    write_auth,
)
from civicsense.deploy.render import MANIFESTS, render
from civicsense.settings import PROJECT_ROOT


def container(obj: dict) -> dict:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("overlay", ["local", "gke"])
def test_the_real_overlays_run_mlflow_with_auth_and_give_every_client_the_secret(rendered,
                                                                                  overlay):
    assert auth_problems(rendered[overlay]) == []


@pytest.mark.parametrize("mutate, expected", [
    (lambda o: container(o["mlflow"])["args"].remove("--app-name=basic-auth"),
     "mlflow server without --app-name=basic-auth"),
    (lambda o: container(o["mlflow"])["env"].__setitem__(-1, {
        "name": "MLFLOW_FLASK_SERVER_SECRET_KEY", "value": "literal"}),
     "MLFLOW_FLASK_SERVER_SECRET_KEY must come from Secret civicsense-mlflow-auth key "
     "flask-secret-key"),
    (lambda o: o["config"]["data"].update({"basic_auth.ini": "[mlflow]\n"
                                           "database_uri = sqlite:///basic_auth.db\n"}),
     "the auth app's database_uri (sqlite:///basic_auth.db) must be on a PersistentVolumeClaim"),
    (lambda o: [e for e in container(o["mlflow"])["env"] if e["name"] ==
                "MLFLOW_AUTH_CONFIG_PATH"][0].update(value="/etc/elsewhere/basic_auth.ini"),
     "MLFLOW_AUTH_CONFIG_PATH must name a file of a mounted ConfigMap"),
    (lambda o: container(o["monitor"]).update(env=[
        e for e in container(o["monitor"])["env"] if e["name"] != "MLFLOW_TRACKING_PASSWORD"]),
     "CronJob civicsense-monitor: spec.jobTemplate.spec.template.spec: MLFLOW_TRACKING_PASSWORD "
     "must come from Secret civicsense-mlflow-auth key password"),
    # A pod that gets MLflow's address from a ConfigMap is a client too.
    (lambda o: o["monitoring"]["data"].update(
        MLFLOW_TRACKING_URI="http://mlflow.civicsense.svc.cluster.local:5000"),
     "Deployment civicsense-log-sink: spec.template.spec: MLFLOW_TRACKING_USERNAME must come from "
     "Secret civicsense-mlflow-auth key username"),
])
def test_each_broken_rule_is_named(rendered, find, mutate, expected):
    objects = copy.deepcopy(rendered["local"])
    named = {"mlflow": find(objects, "Deployment", "mlflow"),
             "config": find(objects, "ConfigMap", "mlflow-auth-config"),
             "monitor": find(objects, "CronJob", "civicsense-monitor"),
             "monitoring": find(objects, "ConfigMap", "civicsense-monitoring")}
    mutate(named)
    replaced = {(o["kind"], o["metadata"]["name"]): o for o in named.values()}
    objects = [replaced.get((o["kind"], o["metadata"]["name"]), o) for o in objects]
    assert any(problem.endswith(expected) for problem in auth_problems(objects)), \
        auth_problems(objects)


def test_without_an_mlflow_server_the_check_fails(rendered):
    objects = [o for o in rendered["local"] if o["metadata"]["name"] != "mlflow"]
    assert "no container runs `mlflow server`" in auth_problems(objects)


def test_the_secrets_go_where_the_server_and_the_clients_are(rendered, crd_cache):
    secrets = secret_objects(rendered["local"], CHECK_MLFLOW_AUTH)
    assert {(s["metadata"]["namespace"], tuple(sorted(s["stringData"]))) for s in secrets} == {
        ("civicsense", ("flask-secret-key", "password", "username")),
        ("kubeflow", ("password", "username"))}   # the pipeline's steps: no CSRF key
    assert {s["metadata"]["name"] for s in secrets} == {AUTH_SECRET}
    report = Report()
    for secret in secrets:
        check_object(secret, "rendered", crd_cache, report)
    assert report.ok, report.problems
    objects = render("gke", mlflow_auth=CHECK_MLFLOW_AUTH)
    assert [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == AUTH_SECRET]
    assert not [o for o in render("gke") if o["metadata"]["name"] == AUTH_SECRET]


def test_the_credentials_file_round_trips_and_refuses_placeholders(tmp_path):
    path = tmp_path / "cluster" / "mlflow-auth"
    auth = MlflowAuth.generate()
    write_auth(path, auth)
    assert oct(path.stat().st_mode)[-3:] == "600" and read_auth(path) == auth
    assert auth.client_env() == {"MLFLOW_TRACKING_USERNAME": "civicsense",
                                 "MLFLOW_TRACKING_PASSWORD": auth.password}
    for text in ("username=a\npassword=REPLACE_WITH_A_PASSWORD\nflask-secret-key=k\n",
                 "username=a\npassword=short\nflask-secret-key=k\n",
                 "username=a\npassword=" + "p" * 20 + "\n"):
        path.write_text(text)
        with pytest.raises(AuthFileError):
            read_auth(path)


@pytest.mark.parametrize("password, key, code", [
    ("REPLACE_WITH_A_PASSWORD", "k" * 32, 1),
    ("p" * 32, "REPLACE_WITH_A_SECRET_KEY", 1),
    ("p" * 32, "k" * 32, 0),
])
def test_the_server_refuses_the_examples_placeholders_at_start(rendered, find, password, key,
                                                               code):
    """The Deployment's own command line, run with /bin/sh; `mlflow server` replaced by true."""
    server = container(find(rendered["local"], "Deployment", "mlflow"))
    argv = [*server["command"], "true"]
    done = subprocess.run(argv, env={"PATH": "/usr/bin:/bin", "MLFLOW_AUTH_ADMIN_PASSWORD":
                                     password, "MLFLOW_FLASK_SERVER_SECRET_KEY": key},
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == code, done.stderr
    assert ("placeholders" in done.stderr) is bool(code)


def test_the_example_secret_holds_only_placeholders():
    docs = list(yaml.safe_load_all((MANIFESTS / "examples" / "mlflow-auth.example.yaml")
                                   .read_text()))
    assert {d["metadata"]["namespace"] for d in docs} == {"civicsense", "kubeflow"}
    assert all(v.startswith("REPLACE_WITH_") for d in docs for k, v in d["stringData"].items()
               if k != "username")


def _with_platform(source: Path, target: Path, edit) -> Path:
    docs = [d for d in yaml.safe_load_all(source.read_text()) if d]
    for doc in docs:
        for spec in (((doc.get("platforms") or {}).get("kubernetes") or {}).get(
                "deploymentSpec") or {}).get("executors", {}).values():
            edit(spec)
    target.write_text(yaml.safe_dump_all(docs))
    return target


def test_pipeline_steps_that_read_mlflows_address_need_the_credentials(tmp_path):
    """Built from the committed training pipeline: with the Secret mapped as kfp-kubernetes'
    use_secret_as_env compiles it, no problem; without it, one per step and variable."""
    committed = PROJECT_ROOT / "pipelines" / "civicsense_training.yaml"

    def add(spec: dict) -> None:
        spec["secretAsEnv"] = [{"secretName": AUTH_SECRET, "optional": False, "keyToEnv": [
            {"secretKey": "username", "envVar": "MLFLOW_TRACKING_USERNAME"},
            {"secretKey": "password", "envVar": "MLFLOW_TRACKING_PASSWORD"}]}]

    assert pipeline_problems(_with_platform(committed, tmp_path / "with.yaml", add)) == []
    problems = pipeline_problems(_with_platform(committed, tmp_path / "without.yaml",
                                                lambda spec: spec.pop("secretAsEnv", None)))
    assert "without.yaml: exec-register-op: MLFLOW_TRACKING_PASSWORD not from Secret " \
           "civicsense-mlflow-auth key password" in problems


def test_the_servers_image_must_carry_the_auth_apps_package(tmp_path):
    lock = tmp_path / "requirements-pipeline.lock"
    lock.write_text("flask==3.1.3\nmlflow==3.17.2\n")
    assert "no flask-wtf pin" in package_problems(lock)[0]
    lock.write_text("flask==3.1.3\nflask-wtf==1.2.2\n    # via mlflow\nmlflow==3.17.2\n")
    assert package_problems(lock) == []


def test_the_cli_renders_the_secrets_from_the_file_and_refuses_placeholders(tmp_path,
                                                                           monkeypatch):
    from typer.testing import CliRunner

    from civicsense.cli.app import app

    monkeypatch.setenv("CIVICSENSE_HOME", str(tmp_path / "home"))
    path = tmp_path / "mlflow-auth"
    write_auth(path, MlflowAuth.generate())
    result = CliRunner().invoke(app, ["deploy", "render", "local", "--mlflow-auth-file",
                                      str(path), "-o", str(tmp_path / "out.yaml")])
    assert result.exit_code == 0, result.output
    out = [o for o in yaml.safe_load_all((tmp_path / "out.yaml").read_text())
           if o["kind"] == "Secret" and o["metadata"]["name"] == AUTH_SECRET]
    assert [s["stringData"]["password"] for s in out] == [read_auth(path).password] * 2
    path.write_text("username=a\npassword=REPLACE_WITH_A_PASSWORD\nflask-secret-key=k\n")
    result = CliRunner().invoke(app, ["deploy", "render", "local", "--mlflow-auth-file",
                                      str(path)])
    assert result.exit_code == 2 and "no placeholders" in result.output
