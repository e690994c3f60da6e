"""Deployment to a cluster: kustomize rendering, schema validation, bring-up commands."""
