"""Canary rollout: the canary / promote / rollback verbs, their patches, kubectl, intent."""
