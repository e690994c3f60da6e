"""The component image on a read-only root filesystem, as the monitor CronJob runs it: the
installed package ships the compiled pipelines, and the drift trigger's cluster launch submits
the shipped YAML (a copy in /tmp for another image) without compiling or writing anything else."""

from __future__ import annotations

import errno
import hashlib
import json

import pytest

from civicsense.orchestration.compiled import LABEL_EXPORT, LABEL_IMPORT, TRAINING
from civicsense.settings import DEFAULT_COMPONENT_IMAGE, PROJECT_ROOT

NAMES = (TRAINING, LABEL_EXPORT, LABEL_IMPORT)

# Runs inside the container: a stub of the KFP REST API on the container's loopback, then
# trigger.launch_cluster (the monitor's path to kfp.Client) for one image; prints one JSON line.
PROBE = r'''
import hashlib, json, os, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import kfp.compiler

def no_compile(*args, **kwargs):
    raise SystemExit("the pipeline was compiled")

kfp.compiler.Compiler.compile = no_compile
import pipelines
from civicsense.monitoring.trigger import launch_cluster
from civicsense.orchestration.compiled import shipped
from civicsense.settings import Settings

IMAGE, NAMES = sys.argv[1], sys.argv[2:]
package = Path(pipelines.__file__).parent
try:  # the root filesystem really is read-only here (and if not, the probe file goes again)
    (package / ".write-probe").touch(exist_ok=False)
    (package / ".write-probe").unlink()
    writable = True
except OSError as error:
    writable = error.errno
posted = []

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self._send({"experiments": [{"experiment_id": "exp-1", "display_name": "civicsense"}],
                    "total_size": 1} if "experiments" in self.path else {})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        posted.append((self.path, body))
        self._send({**body, "run_id": "run-1"})

    def _send(self, payload):
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
Path("/tmp/data.csv").write_text("text,label\nok,positive\n")
listing = sorted(os.listdir(package))
settings = Settings(home="/tmp/home", data="/tmp/data.csv", component_image=IMAGE,
                    kfp_host=f"http://127.0.0.1:{server.server_port}")
run = launch_cluster(settings)
server.shutdown()
(path, body), = [p for p in posted if p[0].endswith("/runs")]
spec = body["pipeline_spec"]["pipeline_spec"]
print(json.dumps({
    "package": str(package), "writable": writable,
    "shipped": {n: hashlib.sha256(shipped(n).read_bytes()).hexdigest() for n in NAMES},
    "shipped_in_package": all(shipped(n).parent == package for n in NAMES),
    "run": run, "path": path,
    "images": sorted({e["container"]["image"]
                      for e in spec["deploymentSpec"]["executors"].values()}),
    "pipeline": spec["pipelineInfo"]["name"],
    "listing_unchanged": sorted(os.listdir(package)) == listing,
    "tmp": sorted(os.listdir("/tmp")),
}))
'''


def probe(docker_client, image: str, pipeline_image: str) -> dict:
    """The probe in `image` as the CronJob runs it: read-only root, /tmp an emptyDir, HOME=/tmp,
    the image's own non-root user."""
    output = docker_client.containers.run(
        image, ["-c", PROBE, pipeline_image, *NAMES], entrypoint="python", read_only=True,
        tmpfs={"/tmp": "rw,size=64m"}, environment={"HOME": "/tmp"}, remove=True,
        stderr=False)
    return json.loads(output.decode().strip().splitlines()[-1])


@pytest.mark.parametrize("pipeline_image", ["own", DEFAULT_COMPONENT_IMAGE])
def test_the_read_only_image_submits_the_shipped_pipeline(docker_client, images,
                                                          pipeline_image):
    own = images["components"]
    wanted = own if pipeline_image == "own" else pipeline_image
    found = probe(docker_client, own, wanted)
    assert found["writable"] == errno.EROFS  # the root filesystem is read-only
    assert "site-packages/pipelines" in found["package"] and found["shipped_in_package"]
    assert found["shipped"] == {n: hashlib.sha256((PROJECT_ROOT / "pipelines" / n)
                                                  .read_bytes()).hexdigest() for n in NAMES}
    assert found["path"] == "/apis/v2beta1/runs" and found["pipeline"] == "civicsense-training"
    assert found["run"]["mode"] == "kfp" and found["run"]["image"] == wanted
    assert found["images"] == [wanted]
    assert found["listing_unchanged"]
    # The copy for another image lived in a temporary directory under /tmp and is gone.
    assert not [name for name in found["tmp"] if name.startswith("civicsense-pipeline-")]
