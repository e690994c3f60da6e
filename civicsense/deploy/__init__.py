"""Deployment: kustomize rendering, schema validation, bring-up, the local serving container."""
