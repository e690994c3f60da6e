"""The compiled pipelines: the YAMLs shipped in the `pipelines` package, their executors'
container images, and copies for another image, written to a temporary directory and never into
the package (on the cluster the package lies on a read-only root filesystem)."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import yaml

# The compiled pipelines, by file name, as pipelines/ holds them and the package ships them.
TRAINING = "civicsense_training.yaml"
LABEL_EXPORT = "civicsense_label_export.yaml"
LABEL_IMPORT = "civicsense_label_import.yaml"
PACKAGE = "pipelines"

# A container image reference as Docker's distribution/reference grammar has it:
# [domain[:port]/]path[/path…][:tag][@sha256:digest], paths in lower case.
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?"
IMAGE_REFERENCE = re.compile(rf"(?:{_DOMAIN}/)?{_PATH}(?:/{_PATH})*"
                             r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?")

Compile = Callable[[Path], Path]


class PipelinePackageError(ValueError):
    """A compiled pipeline that is missing or holds no container executor."""


def check_image(image: str) -> str:
    """`image` if it is a container image reference (name[:tag][@digest]); ValueError if not."""
    if not IMAGE_REFERENCE.fullmatch(image or "") or len(image.split("@")[0]) > 255:
        raise ValueError(f"not a container image reference: {image!r} (expected e.g. "
                         "civicsense-components:0.1.0-abc1234 or registry:5000/path/name:tag)")
    return image


def shipped(name: str = TRAINING) -> Path:
    """The compiled pipeline the installed `pipelines` package ships (package data; in a
    source checkout, the committed pipelines/*.yaml). PipelinePackageError if it is absent."""
    found = resources.files(PACKAGE).joinpath(name)
    if not found.is_file():
        raise PipelinePackageError(f"the installed package ships no {PACKAGE}/{name}: run "
                                   "`civicsense pipeline compile`, or reinstall the package")
    return Path(str(found))


def _read(path: Path) -> tuple[str, list[dict]]:
    """KFP's header comments and the YAML documents (PipelineSpec, then PlatformSpec if any)."""
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    body = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    return "".join(lines[:body]), [doc for doc in yaml.safe_load_all(text) if doc]


def _executors(spec: dict, path: Path) -> dict[str, dict]:
    """deploymentSpec.executors' container specs; PipelinePackageError when there are none."""
    executors = (spec.get("deploymentSpec") or {}).get("executors") or {}
    containers = {name: e["container"] for name, e in executors.items() if "container" in e}
    if not containers:
        raise PipelinePackageError(f"{path}: no container executor under "
                                   "deploymentSpec.executors: not a compiled KFP pipeline")
    return containers


def executor_images(path: Path) -> dict[str, str]:
    """Each container executor's image: {"exec-train-op": "civicsense-components:…", …}."""
    _, docs = _read(path)
    if not docs:
        raise PipelinePackageError(f"{path}: empty")
    return {name: c.get("image", "") for name, c in _executors(docs[0], path).items()}


def with_image(source: Path, image: str, target: Path) -> Path:
    """Write `source` to `target` (which may be `source`) with every executor's image set to
    `image`, in KFP's own layout (header comments, then `yaml.dump_all(sort_keys=True)`)."""
    check_image(image)
    header, docs = _read(source)
    if not docs:
        raise PipelinePackageError(f"{source}: empty")
    for container in _executors(docs[0], source).values():
        container["image"] = image
    target.write_text(header + yaml.dump_all(docs, sort_keys=True))
    return target


@contextmanager
def pipeline_package(image: str | None = None, name: str = TRAINING,
                     compile_to: Compile | None = None) -> Iterator[Path]:
    """The compiled pipeline to submit, for `image`: the shipped YAML itself when every
    executor already runs `image` (or no image is asked for); else a copy with `image`. With
    `compile_to` (a function writing the YAML to the path it is given), a fresh compile instead.
    Copies and compiles go to a temporary directory, removed on exit: nothing is ever written
    into the package."""
    if image is not None:
        check_image(image)
    if compile_to is None:
        source = shipped(name)
        if image is None or set(executor_images(source).values()) == {image}:
            yield source
            return
    with tempfile.TemporaryDirectory(prefix="civicsense-pipeline-") as scratch:
        target = Path(scratch) / name
        if compile_to is not None:
            source = compile_to(target)
        yield with_image(source, image, target) if image else source


def image_problems(path: Path, image: str) -> list[str]:
    """One line per executor of the compiled pipeline at `path` that does not run `image`
    (e.g. the tag `make images` built); [] when every one does."""
    return [f"{path.name}: {name} runs {found or 'no image'}, not {image}"
            for name, found in sorted(executor_images(path).items()) if found != image]
