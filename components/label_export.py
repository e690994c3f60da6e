"""KFP component `label_export_op`: a thin shell over civicsense.labeling.queue.export_tasks."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE)
def label_export_op(budget: int, strategy: str, seed: int, tasks: Output[Dataset]) -> str:
    """Pick `budget` posts from the payload log (by `strategy`) plus every post with user
    feedback, as Label Studio tasks (JSON import format) in `tasks`; returns a JSON summary
    (tasks, by_reason)."""
    import json
    from pathlib import Path

    from civicsense.labeling.queue import export_tasks
    from civicsense.settings import Settings

    result = export_tasks(Settings(), budget, strategy=strategy, seed=seed, out=Path(tasks.path))
    count = result.tasks if isinstance(result.tasks, int) else len(result.tasks)
    tasks.metadata.update({"tasks": count, "by_reason": dict(result.by_reason)})
    return json.dumps({"tasks": count, "by_reason": dict(result.by_reason)})
