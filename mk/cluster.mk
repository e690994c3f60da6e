# The cluster path: validate the manifests offline; bring a kind/minikube cluster up,
# run the end-to-end path on it, take it down. Versions: civicsense/deploy/versions.py.
# Images: the tags `make images` builds, civicsense-{components,serving}:<version>-<git sha>;
# IMAGE_TAG (from mk/images.mk when present) wins, or set COMPONENT_IMAGE / SERVING_IMAGE.
CLUSTER ?= kind
DRY_RUN ?=
CLUSTER_VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
CLUSTER_GIT_SHA = $(shell git rev-parse --short HEAD 2>/dev/null || echo nogit)
CLUSTER_IMAGE_TAG = $(or $(IMAGE_TAG),$(CLUSTER_VERSION)-$(CLUSTER_GIT_SHA))
COMPONENT_IMAGE ?= civicsense-components:$(CLUSTER_IMAGE_TAG)
SERVING_IMAGE ?= civicsense-serving:$(CLUSTER_IMAGE_TAG)
CLUSTER_ARGS = --cluster $(CLUSTER) --component-image $(COMPONENT_IMAGE) \
	--serving-image $(SERVING_IMAGE) $(if $(filter-out 0,$(DRY_RUN)),--dry-run)

.PHONY: check-manifests cluster-up cluster-e2e cluster-down

check-manifests: setup ## Render every overlay; validate every object (Kubernetes/KServe/KFP schemas, KServe webhooks)
	$(BIN)/civicsense deploy check --component-image $(COMPONENT_IMAGE) --serving-image $(SERVING_IMAGE)

cluster-up: setup ## Create a kind cluster (CLUSTER=minikube) with KServe, KFP, MLflow; DRY_RUN=1 prints it
	$(BIN)/civicsense deploy up $(CLUSTER_ARGS)

cluster-e2e: setup ## On that cluster: pipeline, serve, canary, promote, rollback, drift, retrain (DRY_RUN=1)
	$(BIN)/civicsense deploy e2e $(CLUSTER_ARGS)

cluster-down: setup ## Delete the cluster made by cluster-up (DRY_RUN=1 prints it)
	$(BIN)/civicsense deploy down $(CLUSTER_ARGS)
