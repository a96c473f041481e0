"""Evaluation: tasks and prompts, classification and retrieval metrics (model-independent, numpy).

The model-dependent entry points (zero-shot, linear probe, retrieval runs) live in their own modules of
this package and build on these.
"""

from moreclip.eval.embed import Embeddings, data_config_for, embed_dataset, embed_texts, eval_dataset, fuse
from moreclip.eval.metrics import (
    UNCERTAIN_POLICIES,
    accuracy,
    apply_thresholds,
    apply_uncertain,
    auroc,
    average_precision,
    best_f1_threshold,
    bootstrap,
    f1_at_threshold,
    macro_f1,
    multiclass_report,
    multilabel_report,
    percentile_ci,
    select_thresholds,
)
from moreclip.eval.prompts import PromptBank, ensemble, prompt_bank, zero_shot_scores
from moreclip.eval.retrieval_metrics import recall_at_k, retrieval_ranks, retrieval_report
from moreclip.eval.tasks import Label, LabelRule, Task, TaskClass, list_tasks, load_task, task_from_dict

__all__ = [
    "Embeddings",
    "data_config_for",
    "embed_dataset",
    "embed_texts",
    "eval_dataset",
    "fuse",
    "UNCERTAIN_POLICIES",
    "Label",
    "LabelRule",
    "PromptBank",
    "Task",
    "TaskClass",
    "accuracy",
    "apply_thresholds",
    "apply_uncertain",
    "auroc",
    "average_precision",
    "best_f1_threshold",
    "bootstrap",
    "ensemble",
    "f1_at_threshold",
    "list_tasks",
    "load_task",
    "macro_f1",
    "multiclass_report",
    "multilabel_report",
    "percentile_ci",
    "prompt_bank",
    "recall_at_k",
    "retrieval_ranks",
    "retrieval_report",
    "select_thresholds",
    "task_from_dict",
    "zero_shot_scores",
]
