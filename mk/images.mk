# Container images (docs/containers.md): the component image, the serving runtime and its storage
# initializer, tagged <version>-<git sha>; a Python 3.11 base bootstrapped from Debian when no
# registry is reachable; the pipeline in containers; the champion served as KServe serves it.
IMAGE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1)
IMAGE_REVISION := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
IMAGE_TAG ?= $(IMAGE_VERSION)-$(IMAGE_REVISION)
COMPONENT_IMAGE ?= civicsense-components:$(IMAGE_TAG)
SERVING_IMAGE ?= civicsense-serving:$(IMAGE_TAG)
STORAGE_IMAGE ?= civicsense-storage-initializer:$(IMAGE_TAG)
IMAGE_SOURCE ?= https://github.com/civicsense/civicsense
# The base every image starts FROM; when it cannot be pulled, the Debian bootstrap below.
BASE_IMAGE ?= python:3.11-slim
BOOTSTRAP_IMAGE ?= civicsense-base:bookworm-py3.11
DEBIAN_SUITE ?= bookworm
IMAGE_BUILD_DIR := build/images
# BuildKit is needed for the CA secret mount: buildx when present, else the classic client.
DOCKER_BUILD ?= $(shell if docker buildx version >/dev/null 2>&1; then echo docker buildx build \
	--load; else echo env DOCKER_BUILDKIT=1 $$(test -x /usr/bin/docker && echo /usr/bin/docker || \
	echo docker) build; fi)
NICE ?= nice -n 10
# Everything an image is built from: images labelled with this digest are this tree's images.
IMAGE_INPUTS = $(shell find components kserve civicsense pipelines feature_repo -type f \
	-not -path '*/__pycache__/*' -not -name '*.pyc' | LC_ALL=C sort | xargs cat .dockerignore \
	pyproject.toml README.md requirements-*.lock | sha256sum | cut -c1-16)
RUNNER ?= subprocess

.PHONY: docker-engine base-image images image-names image-sizes serve-container test-container

docker-engine: ## Install (if missing) and start a Docker engine; wait until it answers
	.ci/docker-engine

base-image: ## Bootstrap the Python 3.11 base image from Debian packages (no registry needed)
	@if docker image inspect $(BOOTSTRAP_IMAGE) >/dev/null 2>&1; then \
	  echo "base-image: $(BOOTSTRAP_IMAGE) exists"; else \
	  mkdir -p $(IMAGE_BUILD_DIR) && start=$$(date +%s) && \
	  $(NICE) mmdebstrap --quiet --variant=minbase \
	    --include=python3,python3-venv,ca-certificates,libgomp1 \
	    $(DEBIAN_SUITE) $(IMAGE_BUILD_DIR)/rootfs.tar && \
	  docker import \
	    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
	    --change 'LABEL org.opencontainers.image.description="Debian $(DEBIAN_SUITE) minbase + python3 (mmdebstrap)"' \
	    $(IMAGE_BUILD_DIR)/rootfs.tar $(BOOTSTRAP_IMAGE) >/dev/null && \
	  rm -f $(IMAGE_BUILD_DIR)/rootfs.tar && \
	  echo "base-image: $(BOOTSTRAP_IMAGE) in $$(( $$(date +%s) - start )) s"; fi

# The host's CA bundle plus its local extra certificates, handed to pip/uv as a BuildKit secret
# (a TLS-intercepting proxy on the way to PyPI); it never enters a layer.
$(IMAGE_BUILD_DIR)/ca-bundle.pem: FORCE
	@mkdir -p $(@D)
	@cat /etc/ssl/certs/ca-certificates.crt $(wildcard /usr/local/share/ca-certificates/*.crt) \
	  > $@.tmp 2>/dev/null; mv $@.tmp $@

FORCE:

# The local CPU builds the component image's lock pins (`+cpu`), copied from pip's find-links
# directory into the build context: PyPI only has the CUDA builds.
$(IMAGE_BUILD_DIR)/wheels: requirements-pipeline.lock
	@mkdir -p $@ && set -e; for pin in $$(sed -n 's/^\([A-Za-z0-9_.-]*\)==\(.*+cpu\)$$/\1-\2/p' $<); do \
	  wheel=$$(ls $(addsuffix /$${pin}-*.whl,$(FIND_LINKS)) 2>/dev/null | head -n 1); \
	  if [ -z "$$wheel" ]; then echo "images: no wheel for $$pin in $(FIND_LINKS)" >&2; exit 1; fi; \
	  [ -f $@/$$(basename $$wheel) ] || cp $$wheel $@/; done; touch $@

images: $(IMAGE_BUILD_DIR)/ca-bundle.pem $(IMAGE_BUILD_DIR)/wheels ## Build the component, serving and storage-initializer images
	@set -euo pipefail; base=$(BASE_IMAGE); \
	if ! docker image inspect $$base >/dev/null 2>&1 && \
	   ! timeout 60 docker pull -q $$base >/dev/null 2>&1; then \
	  echo "images: $$base cannot be pulled; using $(BOOTSTRAP_IMAGE)"; \
	  $(MAKE) --no-print-directory base-image; base=$(BOOTSTRAP_IMAGE); fi; \
	args="--build-arg BASE_IMAGE=$$base --build-arg VERSION=$(IMAGE_VERSION) \
	  --build-arg GIT_COMMIT=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	  --build-arg SOURCE=$(IMAGE_SOURCE) --label io.civicsense.inputs=$(IMAGE_INPUTS) --secret id=ca_bundle,src=$(IMAGE_BUILD_DIR)/ca-bundle.pem"; \
	for spec in "components/Dockerfile runtime $(COMPONENT_IMAGE)" \
	            "kserve/Dockerfile runtime $(SERVING_IMAGE)" \
	            "kserve/Dockerfile storage-initializer $(STORAGE_IMAGE)"; do \
	  set -- $$spec; start=$$(date +%s); \
	  $(NICE) $(DOCKER_BUILD) --quiet -f $$1 --target $$2 $$args -t $$3 . >/dev/null; \
	  echo "images: built $$3 in $$(( $$(date +%s) - start )) s"; done
	@$(MAKE) --no-print-directory image-sizes IMAGE_TAG=$(IMAGE_TAG)

image-names: # The tags and the inputs' digest (the container tests read them)
	@echo components=$(COMPONENT_IMAGE) serving=$(SERVING_IMAGE) storage=$(STORAGE_IMAGE) \
	  inputs=$(IMAGE_INPUTS)

image-sizes: ## Print each image's size (serving target: <= 1.0 GB)
	@for image in $(COMPONENT_IMAGE) $(SERVING_IMAGE) $(STORAGE_IMAGE); do \
	  if docker image inspect $$image >/dev/null 2>&1; then \
	    docker image inspect -f '{{.Size}} {{.Id}}' $$image | \
	    awk -v n=$$image '{printf "  %-52s %6.0f MB  %s\n", n, $$1/1e6, substr($$2, 1, 19)}'; \
	  else echo "  $$image: not built"; fi; done

serve-container: images ## Serve the champion in the serving image, as KServe does (PORT=8080)
	$(BIN)/python -m civicsense.deploy.container --image $(SERVING_IMAGE) \
	  --initializer-image $(STORAGE_IMAGE) $(if $(PORT),--port $(PORT))

test-container: setup ## The container suite: builds/reuses the images, runs them (needs Docker)
	$(BIN)/python -m pytest tests/container $(PYTEST_ARGS)

# `make run RUNNER=docker`: every pipeline step in the component image (KFP's DockerRunner).
ifeq ($(RUNNER),docker)
RUN_ARGS += --runner docker --image $(COMPONENT_IMAGE)
run: images
endif

# One lock per image, constrained by requirements.lock (the versions the tests ran). Run after
# `make lock`; kserve-storage pins google-cloud-storage < 3, so its lock stands alone.
IMAGE_PLATFORM = --python-version 3.11 --python-platform x86_64-manylinux_2_28
lock-images: ## Re-resolve requirements-{serving,pipeline,storage}.lock (after make lock)
	$(BIN)/uv pip compile --quiet pyproject.toml --extra serving -c requirements.lock \
	  $(IMAGE_PLATFORM) $(UV_FIND_LINKS) -o requirements-serving.lock
	$(BIN)/uv pip compile --quiet pyproject.toml --extra pipeline --extra encoder -c requirements.lock \
	  $(IMAGE_PLATFORM) $(UV_FIND_LINKS) -o requirements-pipeline.lock
	$(BIN)/uv pip compile --quiet kserve/storage-initializer.in $(IMAGE_PLATFORM) \
	  --custom-compile-command "make lock-images" -o requirements-storage.lock
