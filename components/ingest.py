"""KFP component `ingest_op`: a thin shell over civicsense.data.merge.ingest_sources."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output, OutputPath

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE)
def ingest_op(
    source: str,
    label_sources: list,
    confirmed_labels: bool,
    source_fingerprint: str,
    snapshot: Output[Dataset],
    quarantine: Output[Dataset],
    report: Output[Metrics],
    data_versions: OutputPath(str),
) -> str:
    """Ingest `source` plus the labelled snapshots `label_sources` (and, with
    `confirmed_labels`, every confirmed snapshot found under this pod's CIVICSENSE_HOME: for
    cluster runs, whose submitter cannot see the state volume; run those without the step
    cache). Returns the merged snapshot's data version; `data_versions` gets each source's own
    version (JSON list, base first). `source_fingerprint` only feeds the cache key."""
    import json
    from pathlib import Path

    from civicsense.data.merge import ingest_sources
    from civicsense.settings import Settings

    settings = Settings()
    sources = [source, *label_sources]
    if confirmed_labels:
        from civicsense.labeling.snapshots import confirmed_sources

        sources += [str(path) for path in confirmed_sources(settings)
                    if str(path) not in sources]
    result = ingest_sources(sources, settings, Path(snapshot.path), Path(quarantine.path))
    summary = result.report
    for key in ("records_read", "lines_read", "accepted", "quarantined"):
        report.log_metric(key, summary[key])
    snapshot.metadata.update({"data_version": result.data_version, "rows": len(result.accepted),
                              "source_versions": result.source_versions})
    quarantine.metadata["rows"] = len(result.quarantined)
    # A Metrics artifact with no file never hits the local cache: write the report there too.
    Path(report.path).write_text(json.dumps(summary, indent=2))
    Path(data_versions).write_text(json.dumps(list(result.source_versions.values())))
    return result.data_version
