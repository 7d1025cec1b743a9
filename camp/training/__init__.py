"""Fine-tuning with XTuner: the memory plan (plan), XTuner's config, command and log (xtuner), the stage (stage),
its result (result), and the CPU workarounds XTuner needs (xtuner_compat)."""

from camp.training.plan import Plan, PlanError
from camp.training.result import FinetuneResult
from camp.training.stage import finetune, is_complete

__all__ = ["Plan", "PlanError", "FinetuneResult", "finetune", "is_complete"]
