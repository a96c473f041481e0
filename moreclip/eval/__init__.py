"""Evaluation: tasks and prompts, metrics, and the model-dependent entry points built on them.

    emb = embed_dataset(model, dataset)                       # frozen embeddings (Embeddings)
    zero_shot(model, test_ds, "ptbxl-super", val=val_ds)      # ZeroShotResult
    linear_probe(model, all_ds, "synthetic-ecg")              # ProbeResult (fractions x seeds)
    retrieval(model, test_ds, "ecg:ecg_report", pool=500)     # RetrievalResult
    evaluate_zero_shot("ckpt/", manifest=..., task=...)       # what `moreclip zeroshot` runs (writes outputs)

Note: the function :func:`retrieval` shadows the attribute ``moreclip.eval.retrieval`` (the module);
import module members with ``from moreclip.eval.retrieval import ...``.
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
from moreclip.eval.probe import ProbeResult, linear_probe, sample_subjects
from moreclip.eval.prompts import PromptBank, ensemble, prompt_bank, zero_shot_scores
from moreclip.eval.retrieval import RetrievalResult, retrieval
from moreclip.eval.retrieval_metrics import recall_at_k, retrieval_ranks, retrieval_report
from moreclip.eval.runs import evaluate_probe, evaluate_retrieval, evaluate_zero_shot
from moreclip.eval.tasks import Label, LabelRule, Task, TaskClass, list_tasks, load_task, task_from_dict
from moreclip.eval.zeroshot import ZeroShotResult, zero_shot

__all__ = [
    "ProbeResult",
    "RetrievalResult",
    "ZeroShotResult",
    "evaluate_probe",
    "evaluate_retrieval",
    "evaluate_zero_shot",
    "linear_probe",
    "retrieval",
    "sample_subjects",
    "zero_shot",
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
