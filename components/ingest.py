"""KFP component `ingest_op`: a thin shell over civicsense.data.ingest.ingest_source."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE)
def ingest_op(
    source: str,
    source_fingerprint: str,
    snapshot: Output[Dataset],
    quarantine: Output[Dataset],
    report: Output[Metrics],
) -> str:
    """Ingest `source`; returns the snapshot's data version. `source_fingerprint` only feeds the
    cache key, so a changed source is ingested again."""
    import json
    from pathlib import Path

    from civicsense.data.ingest import ingest_source
    from civicsense.settings import Settings

    result = ingest_source(source, Settings(), Path(snapshot.path), Path(quarantine.path))
    summary = result.report
    for key in ("records_read", "lines_read", "accepted", "quarantined"):
        report.log_metric(key, summary[key])
    snapshot.metadata.update({"data_version": result.data_version, "rows": len(result.accepted)})
    quarantine.metadata["rows"] = len(result.quarantined)
    # A Metrics artifact with no file never hits the local cache: write the report there too.
    Path(report.path).write_text(json.dumps(summary, indent=2))
    return result.data_version
