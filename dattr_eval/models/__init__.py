"""Reference models, seeded training with checkpoints, and a disk cache of trained models."""

from dattr_eval.models.architectures import (
    ARCHITECTURES,
    BasicConv,
    CifarResNet18,
    DigitsCNN,
    DigitsMLP,
    build_model,
)
from dattr_eval.models.cache import ModelCache, data_fingerprint, load_checkpoint
from dattr_eval.models.ensemble import ensemble_outputs, train_ensemble
from dattr_eval.models.retraining import RecipeRetrainer, Retrainer, target_log_probs
from dattr_eval.models.training import Checkpoint, TrainedModel, TrainRecipe, accuracy, train_model

__all__ = [
    "ARCHITECTURES",
    "BasicConv",
    "Checkpoint",
    "CifarResNet18",
    "DigitsCNN",
    "DigitsMLP",
    "ModelCache",
    "RecipeRetrainer",
    "Retrainer",
    "TrainRecipe",
    "TrainedModel",
    "accuracy",
    "build_model",
    "data_fingerprint",
    "ensemble_outputs",
    "load_checkpoint",
    "target_log_probs",
    "train_ensemble",
    "train_model",
]
