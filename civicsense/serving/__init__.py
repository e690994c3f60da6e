"""Serving: the KServe model server (V1 + V2), its model processes, feedback and limits."""
