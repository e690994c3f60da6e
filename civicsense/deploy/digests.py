"""Digest pinning of a rendered overlay: given the project's images by digest (`name@sha256:…`,
what a registry reports after `docker push`), every container that runs one of them, and the
image the monitor's triggered runs use, is exactly that reference; any other image must be a
third-party one pinned in civicsense.deploy.versions."""

from __future__ import annotations

import re
from collections.abc import Iterator

from civicsense.deploy.policy import pod_specs
from civicsense.deploy.render import COMPONENT_IMAGE, SERVING_IMAGE
from civicsense.deploy.versions import LABEL_STUDIO_IMAGE

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# Pinned by tag in versions.py: no registry is reachable where the manifests are checked, so
# their digests cannot be looked up here (docs/cluster.md).
THIRD_PARTY = (LABEL_STUDIO_IMAGE,)
RUN_IMAGE_KEY = "CIVICSENSE_COMPONENT_IMAGE"   # a ConfigMap's image for triggered runs
# check-manifests renders each overlay with these stand-ins (one digest per image, so a swap
# shows); a registry is a name only, never contacted.
STAND_INS = {COMPONENT_IMAGE: "registry.check.invalid/civicsense/civicsense-components@sha256:"
             + "1" * 64,
             SERVING_IMAGE: "registry.check.invalid/civicsense/civicsense-serving@sha256:"
             + "2" * 64}


def project_image(image: str) -> str | None:
    """civicsense-components / civicsense-serving when `image` is one of them (any registry,
    tag or digest), else None."""
    name = image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
    return name if name in (COMPONENT_IMAGE, SERVING_IMAGE) else None


def images(objects: list[dict]) -> Iterator[tuple[str, str]]:
    """(where, image) of every container and init container, and every ConfigMap's image for
    the runs it starts."""
    for obj in objects:
        meta = obj.get("metadata") or {}
        who = f"{obj.get('kind')} {meta.get('namespace', '-')}/{meta.get('name')}"
        for where, spec in pod_specs(obj):
            for group in ("initContainers", "containers"):
                for index, container in enumerate(spec.get(group) or []):
                    yield f"{who}: {where}.{group}[{index}]", str(container.get("image"))
        if obj.get("kind") == "ConfigMap" and RUN_IMAGE_KEY in (obj.get("data") or {}):
            yield f"{who}: data.{RUN_IMAGE_KEY}", obj["data"][RUN_IMAGE_KEY]


def digest_problems(objects: list[dict], refs: dict[str, str],
                    unpinned: list[dict] | None = None) -> list[str]:
    """`refs`: civicsense-components / civicsense-serving → `name@sha256:<64 hex>`. With
    `unpinned` (the same overlay rendered without them), each place must run the reference of
    the image it ran there, so a swap shows too."""
    problems = [f"{name}: {ref} is not a reference by digest (name@sha256:<64 hex>)"
                for name, ref in sorted(refs.items()) if not DIGEST.search(ref)]
    before = {where: project_image(image) for where, image in images(unpinned or [])}
    for where, image in images(objects):
        name = before.get(where) or project_image(image)
        if name is not None and image != refs.get(name):
            problems.append(f"{where}: runs {image}, not {refs.get(name, 'a pinned digest')}")
        elif name is None and image not in THIRD_PARTY:
            problems.append(f"{where}: {image} is neither a project image nor a third-party "
                            "one pinned in civicsense/deploy/versions.py")
    return problems


def pinned_refs(component_image: str | None, serving_image: str | None) -> dict[str, str]:
    """The references the digest check renders with: those given when both are by digest,
    else the stand-ins."""
    given = {COMPONENT_IMAGE: component_image, SERVING_IMAGE: serving_image}
    if all(ref and DIGEST.search(ref) for ref in given.values()):
        return {name: str(ref) for name, ref in given.items()}
    return dict(STAND_INS)
