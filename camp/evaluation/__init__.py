"""Evaluation with OpenCompass: what is asked (datasets), what is scored (targets), OpenCompass's config, progress
and outputs (opencompass), the stage (stage) and its result (result)."""

from camp.evaluation.datasets import list_datasets, load_questions, resolve_datasets, self_cognition_check
from camp.evaluation.result import EvalResult
from camp.evaluation.stage import EvalError, evaluate
from camp.evaluation.targets import resolve_models

__all__ = ["list_datasets", "load_questions", "resolve_datasets", "self_cognition_check", "EvalResult", "EvalError",
           "evaluate", "resolve_models"]
