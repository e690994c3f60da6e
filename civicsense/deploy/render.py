"""Render an overlay of manifests/ with `kubectl kustomize`: images set to the references given
(the tags `make images` built, or registry digests; in a temporary copy, as `kustomize edit set
image` would), the sink's shared token filled in, MLflow's credentials Secrets added when given,
the result as Kubernetes objects."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from civicsense.deploy.mlflow_auth import MlflowAuth, secret_objects
from civicsense.monitoring.sink_auth import TOKEN_PLACEHOLDER
from civicsense.settings import PROJECT_ROOT

MANIFESTS = PROJECT_ROOT / "manifests"
OVERLAYS = MANIFESTS / "overlays"
# The names base/ uses for the two images; every overlay's `images:` maps them.
COMPONENT_IMAGE, SERVING_IMAGE = "civicsense-components", "civicsense-serving"
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{32,256}")


class RenderError(RuntimeError):
    """An overlay kustomize could not render, or inputs it must not take."""


@dataclass(frozen=True)
class ImageRef:
    """`registry/path/name:tag` or `…@sha256:…` split as kustomize's `images:` wants it."""

    new_name: str
    new_tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        if not ref or any(c.isspace() for c in ref):
            raise RenderError(f"not an image reference: {ref!r}")
        name, _, digest = ref.partition("@")
        last = name.rsplit("/", 1)[-1]
        if ":" in last:
            name, tag = name.rsplit(":", 1)
        else:
            tag = None
        return cls(name, tag, digest or None)

    def entry(self, name: str) -> dict:
        entry = {"name": name, "newName": self.new_name}
        if self.new_tag:
            entry["newTag"] = self.new_tag
        if self.digest:
            entry["digest"] = self.digest
        return entry


def overlay_names(root: Path = OVERLAYS) -> list[str]:
    return sorted(p.name for p in root.iterdir() if (p / "kustomization.yaml").is_file())


def set_images(kustomization: Path, images: dict[str, ImageRef]) -> None:
    """Replace (or add) the `images:` entries named in `images` in one kustomization file."""
    spec = yaml.safe_load(kustomization.read_text())
    kept = [e for e in spec.get("images") or [] if e.get("name") not in images]
    spec["images"] = kept + [ref.entry(name) for name, ref in sorted(images.items())]
    kustomization.write_text(yaml.safe_dump(spec, sort_keys=False))


def fill_token(node: object, token: str) -> object:
    """Every occurrence of the placeholder (the Secret's) becomes the token."""
    if isinstance(node, dict):
        return {key: fill_token(value, token) for key, value in node.items()}
    if isinstance(node, list):
        return [fill_token(item, token) for item in node]
    if isinstance(node, str):
        return node.replace(TOKEN_PLACEHOLDER, token)
    return node


def read_token(path: Path) -> str:
    token = path.read_text().strip()
    if not TOKEN_PATTERN.fullmatch(token):
        raise RenderError(f"{path}: the sink token must be 32-256 URL-safe characters "
                          "([A-Za-z0-9_-]), e.g. `openssl rand -hex 32`")
    return token


def kustomize(directory: Path, kubectl: str = "kubectl", timeout: float = 120) -> str:
    """`kubectl kustomize DIR` as text; its own error message if it fails."""
    try:
        done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True,
                              text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RenderError(f"cannot run {kubectl} kustomize: {error}") from None
    if done.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory}: {done.stderr.strip()}")
    return done.stdout


def render(overlay: str, component_image: str | None = None, serving_image: str | None = None,
           sink_token: str | None = None, manifests: Path = MANIFESTS,
           kubectl: str = "kubectl", mlflow_auth: MlflowAuth | None = None) -> list[dict]:
    """The overlay's objects, with the images and the sink token given (else its defaults and
    the placeholder, which `check-manifests` replaces with a test token), and with MLflow's
    credentials Secrets when `mlflow_auth` is given (else none: MLflow waits for them)."""
    if not (manifests / "overlays" / overlay / "kustomization.yaml").is_file():
        raise RenderError(f"no overlay {overlay!r} (have: "
                          f"{', '.join(overlay_names(manifests / 'overlays'))})")
    if sink_token is not None and not TOKEN_PATTERN.fullmatch(sink_token):
        raise RenderError("the sink token must be 32-256 URL-safe characters")
    images = {name: ImageRef.parse(ref) for name, ref in
              ((COMPONENT_IMAGE, component_image), (SERVING_IMAGE, serving_image)) if ref}
    with tempfile.TemporaryDirectory(prefix="civicsense-render-") as scratch:
        copy = Path(scratch) / "manifests"
        shutil.copytree(manifests, copy)
        if images:
            set_images(copy / "overlays" / overlay / "kustomization.yaml", images)
        text = kustomize(copy / "overlays" / overlay, kubectl)
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    objects += secret_objects(objects, mlflow_auth) if mlflow_auth else []
    return [fill_token(o, sink_token) for o in objects] if sink_token else objects


def to_yaml(objects: list[dict]) -> str:
    return "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objects)
