"""The run folder and its one orchestrator, shared by the API, the CLI and the benchmark."""

from xssr.pipeline.inputs import Inputs
from xssr.pipeline.plan import needs_embeddings, needs_source, plan
from xssr.pipeline.run import Pipeline, StageResult, resolve_device
from xssr.pipeline.stage import Stage

__all__ = ["Inputs", "Pipeline", "Stage", "StageResult", "needs_embeddings", "needs_source", "plan", "resolve_device"]
