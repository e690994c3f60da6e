"""Rendered with the project's images by digest, every container and the monitor's triggered runs
use exactly those references; a tag, a hard-coded image or an unpinned third-party image fails."""

from __future__ import annotations

import copy

import pytest

from civicsense.deploy.check import Report, check_digests
from civicsense.deploy.digests import STAND_INS, digest_problems, images, pinned_refs
from civicsense.deploy.render import render
from civicsense.deploy.versions import LABEL_STUDIO_IMAGE

REFS = {"civicsense-components": "europe-west1-docker.pkg.dev/p/cs/civicsense-components@sha256:"
        + "a" * 64,
        "civicsense-serving": "europe-west1-docker.pkg.dev/p/cs/civicsense-serving:0.1.0@sha256:"
        + "b" * 64}


@pytest.fixture(scope="module")
def pinned() -> dict[str, list[dict]]:
    return {overlay: render(overlay, REFS["civicsense-components"], REFS["civicsense-serving"])
            for overlay in ("local", "gke")}


@pytest.mark.parametrize("overlay", ["local", "gke"])
def test_every_project_image_is_the_digest_given(rendered, pinned, overlay):
    assert digest_problems(pinned[overlay], REFS, rendered[overlay]) == []
    found = {image for _, image in images(pinned[overlay])}
    assert found == {*REFS.values(), LABEL_STUDIO_IMAGE}
    # the drift trigger's runs too (the overlays' replacements copy the monitor's image)
    assert any(where.endswith("data.CIVICSENSE_COMPONENT_IMAGE") and image == REFS[
        "civicsense-components"] for where, image in images(pinned[overlay]))


def test_tags_are_not_digests(rendered):
    problems = digest_problems(rendered["local"], {"civicsense-components": "civicsense-"
                                                   "components:0.1.0-dev",
                                                   "civicsense-serving": "civicsense-serving:"
                                                   "0.1.0-dev"})
    assert problems[0] == ("civicsense-components: civicsense-components:0.1.0-dev is not a "
                           "reference by digest (name@sha256:<64 hex>)")


@pytest.mark.parametrize("image, message", [
    ("civicsense-components:latest", "runs civicsense-components:latest, not "),
    (REFS["civicsense-serving"], "runs europe-west1-docker.pkg.dev/p/cs/civicsense-serving"),
    ("busybox:1.36", "runs busybox:1.36, not "),
])
def test_an_image_the_render_did_not_set_fails(rendered, pinned, image, message):
    objects = copy.deepcopy(pinned["local"])
    sink, = [o for o in objects if o["kind"] == "Deployment"
             and o["metadata"]["name"] == "civicsense-log-sink"]
    sink["spec"]["template"]["spec"]["containers"][0]["image"] = image
    problem, = digest_problems(objects, REFS, rendered["local"])   # the sink ran components
    assert problem.startswith("Deployment civicsense/civicsense-log-sink: "
                              "spec.template.spec.containers[0]")
    assert message in problem


def test_check_manifests_renders_with_the_digests_given_else_stand_ins():
    assert pinned_refs(REFS["civicsense-components"], REFS["civicsense-serving"]) == REFS
    assert pinned_refs("civicsense-components:0.1.0-abc", REFS["civicsense-serving"]) == STAND_INS
    report = Report()
    check_digests("gke", report, "civicsense-components:0.1.0-abc", None)
    assert report.ok and report.checked[0][1] == "images by digest"
    assert STAND_INS["civicsense-serving"] in report.checked[0][2]


def test_an_unpinned_third_party_image_fails(rendered, pinned):
    objects = copy.deepcopy(pinned["local"])
    studio, = [o for o in objects if o["kind"] == "Deployment"
               and o["metadata"]["name"] == "label-studio"]
    studio["spec"]["template"]["spec"]["initContainers"] = [{"name": "wait", "image": "busybox"}]
    assert digest_problems(objects, REFS, rendered["local"]) == [
        "Deployment civicsense/label-studio: spec.template.spec.initContainers[0]: busybox is "
        "neither a project image nor a third-party one pinned in civicsense/deploy/versions.py"]
