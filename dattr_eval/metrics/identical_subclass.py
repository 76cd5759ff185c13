"""Identical subclass: on a model trained on superclasses, do the top training samples share the fine label?"""

from __future__ import annotations

from dattr_eval.metrics import register
from dattr_eval.metrics.identical_class import IdenticalClass


@register("identical_subclass", aliases=("subclass_detection",))
class IdenticalSubclass(IdenticalClass):
    """Share of the ``top_k`` highest-attributed training samples whose *fine* label equals the test point's.

    The model is trained on superclasses (groups of fine classes), so attributions that merely follow
    the predicted superclass score about ``1 / (fine classes per superclass)``; those that find the
    test point's own subclass score 1. Per test point:
    ``(1/k) Σ_{i ∈ top-k(A(x))} 1[train_fine_labels[i] = test_fine_labels(x)]``; score = mean.
    Ties go to the lower training index.

    Args:
        top_k: number of training samples inspected per test point (1 in v1 of the DualView paper,
            5 in v2/v3).
    """

    summary = "share of the top-k training samples whose fine (sub)class equals the test point's"
    citation = "Hanawa et al., Evaluation of Similarity-based Explanations, ICLR 2021"
    requires = ("train_fine_labels", "test_fine_labels")
    label_fields = ("train_fine_labels", "test_fine_labels")
