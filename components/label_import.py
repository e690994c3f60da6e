"""KFP component `label_import_op`: a thin shell over labeling.snapshots.import_labels."""

from kfp import dsl

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE)
def label_import_op(export_file: str) -> str:
    """Import a Label Studio JSON export (a path the pod sees, e.g. on the state PVC) as a
    labelled snapshot under <home>/labels; returns a JSON summary (data_version, rows, skipped,
    path). The next training run with labels merges it after the base data."""
    import json
    from pathlib import Path

    from civicsense.labeling.snapshots import import_labels
    from civicsense.settings import Settings

    snapshot = import_labels(Settings(), Path(export_file))
    return json.dumps({"data_version": snapshot.data_version, "rows": snapshot.rows,
                       "skipped": snapshot.skipped, "path": str(snapshot.path)}, default=str)
