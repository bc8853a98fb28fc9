"""gradekit.graders: OpenAI-compatible grader models, Python function graders, and their evaluation."""

from .api import arun, arun_batch, load_grader, run, run_batch, validate, validate_untrusted
from .base import Grader
from .batch import Batch
from .errors import DETAIL_FIELDS, ERROR_FLAGS, GraderValidationError, GradingError, Problem
from .executors import (
    Call,
    Embedder,
    EndpointCaller,
    Env,
    InProcessPythonExecutor,
    ModelClient,
    ModelGrade,
    PythonExecutor,
)
from .functions import FunctionGrader, Score, grader
from .models import (
    AnyGrader,
    Endpoint,
    LabelModel,
    Message,
    Multi,
    PythonGrader,
    SamplingParams,
    ScoreModel,
    StringCheck,
    TextSimilarity,
    ToolCall,
)
from .results import BatchResult, GraderErrors, GraderMetadata, RunResult
from .samples import make_sample
from .templates import Template

__all__ = [
    "DETAIL_FIELDS",
    "ERROR_FLAGS",
    "AnyGrader",
    "Batch",
    "BatchResult",
    "Call",
    "Embedder",
    "Endpoint",
    "EndpointCaller",
    "Env",
    "FunctionGrader",
    "Grader",
    "GraderErrors",
    "GraderMetadata",
    "GraderValidationError",
    "GradingError",
    "InProcessPythonExecutor",
    "LabelModel",
    "Message",
    "ModelClient",
    "ModelGrade",
    "Multi",
    "Problem",
    "PythonExecutor",
    "PythonGrader",
    "RunResult",
    "SamplingParams",
    "Score",
    "ScoreModel",
    "StringCheck",
    "Template",
    "TextSimilarity",
    "ToolCall",
    "arun",
    "arun_batch",
    "grader",
    "load_grader",
    "make_sample",
    "run",
    "run_batch",
    "validate",
    "validate_untrusted",
]
