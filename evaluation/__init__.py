"""Offline evaluation: verification and face-quality metrics, in plain numpy so the numbers do not depend on an ML library."""

from evaluation.metrics import (
    best_threshold_accuracy,
    bootstrap_ci,
    edc_curve,
    edc_partial_auc,
    eer,
    kfold_accuracy,
    ood_auroc,
    roc_auc,
    roc_curve,
    tar_at_far,
    threshold_at_fmr,
)

__all__ = [
    "best_threshold_accuracy",
    "bootstrap_ci",
    "edc_curve",
    "edc_partial_auc",
    "eer",
    "kfold_accuracy",
    "ood_auroc",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "threshold_at_fmr",
]
