"""The KServe model: texts in, label and class probabilities out, whole batches, V1 and V2."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid

from kserve import Model
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from civicsense import LABELS
from civicsense.monitoring.inference_log import log_prediction
from civicsense.serving.budget import RequestTimedOut, chunks, merge_scores
from civicsense.serving.loading import LoadedModel, load_model, load_resolved, resolve_model, score
from civicsense.serving.model_processes import ModelProcesses
from civicsense.serving.validation import INPUT_NAME, Limits, texts_from_v1, texts_from_v2
from civicsense.settings import Settings


class SentimentKServeModel(Model):
    """The registered model behind KServe's data plane; with processes > 1 the predicting is
    done by that many model processes, fed by this (the HTTP) process."""

    def __init__(self, name: str, model_uri: str, settings: Settings, processes: int = 1):
        super().__init__(name)
        self.model_uri = model_uri
        self.settings = settings
        self.limits = Limits(settings.max_text_chars, settings.max_batch,
                             settings.max_request_chars)
        self.processes = processes
        self.loaded: LoadedModel | None = None
        self.pool: ModelProcesses | None = None

    @property
    def ready(self) -> bool:
        """Loaded, and (with model processes) at least one of them alive: what /v2/health/ready,
        /v2/health/live and /v2/models/<name>/ready report, checked on every call."""
        if not self._ready or self.loaded is None:
            return False
        return self.pool is None or self.pool.alive > 0

    @ready.setter
    def ready(self, value: bool) -> None:  # kserve.Model sets it in __init__, load and stop
        self._ready = value

    def load(self) -> bool:
        """Load the model here, or with processes > 1 resolve it here and load it in that many
        model processes, which then do the predicting."""
        if self.processes > 1:
            # Never the pyfunc here: its code_paths would join sys.path, and the processes
            # spawned from here would import civicsense from the model's copy of it.
            self.loaded = resolve_model(self.model_uri, self.settings)
            self.pool = ModelProcesses(functools.partial(load_resolved, self.loaded,
                                                         self.settings),
                                       score, self.processes, self.loaded.version_tag)
            self.pool.start()
        else:
            self.loaded = load_model(self.model_uri, self.settings)
        self.ready = True
        return self.ready

    def stop(self) -> None:
        super().stop()
        if self.pool is not None:
            self.pool.stop()

    def get_input_types(self) -> list[dict]:
        return [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(LABELS)]}]

    async def _score_within_budget(self, texts: list[str]):
        """Score in chunks of at most settings.serve_chunk_chars characters, one chunk at a time:
        a large batch holds one model process for one chunk at a time, so requests beside it
        keep their latency, and past settings.request_timeout_seconds it stops between chunks
        (RequestTimedOut: a 503) instead of holding a process to the end."""
        budget = self.settings.request_timeout_seconds
        deadline = time.monotonic() + budget
        answers = []
        for chunk in chunks(texts, self.settings.serve_chunk_chars):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestTimedOut(budget)
            if self.pool is None:  # in this process: a thread, so the event loop keeps going
                work = asyncio.get_running_loop().run_in_executor(
                    None, score, self.loaded.predictor, chunk)
            else:
                work = self.pool.score(chunk)
            try:
                answers.append(await asyncio.wait_for(work, remaining))
            except TimeoutError:
                raise RequestTimedOut(budget) from None
        return merge_scores(answers)

    async def predict(self, payload, headers=None, response_headers=None):
        assert self.loaded is not None
        v2 = isinstance(payload, InferRequest)
        texts = texts_from_v2(payload, self.limits) if v2 else texts_from_v1(payload,
                                                                            self.limits)
        probabilities, descriptors = await self._score_within_budget(texts)
        labels = [LABELS[i] for i in probabilities.argmax(axis=1)]
        # Payload log (docs/monitoring.md): queued for a background writer; never raises. The
        # descriptors come from the features just computed: the text is featurized once.
        log_prediction(self.settings, texts, labels, probabilities, self.loaded.version_tag,
                       descriptors=descriptors)
        if not v2:
            rows = probabilities.tolist()
            return {"predictions": [{"label": label, "probabilities": dict(zip(LABELS, row,
                                                                               strict=True))}
                                    for label, row in zip(labels, rows, strict=True)],
                    "model_version": self.loaded.version_tag}
        return InferResponse(
            response_id=payload.id or str(uuid.uuid4()), model_name=self.name,
            model_version=self.loaded.version_tag,
            infer_outputs=[
                InferOutput("label", [len(labels)], "BYTES", labels),
                InferOutput("probabilities", list(probabilities.shape), "FP32",
                            probabilities.reshape(-1).tolist()),
            ],
            parameters={"run_id": self.loaded.run_id, "registered_version":
                        self.loaded.version},
        )
