"""DualView (Yolcu et al. 2024): attributions from the dual of a Crammer–Singer SVM surrogate."""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import Dataset

from dattr_eval.explainers import register
from dattr_eval.explainers.base import ColumnScorer, Explainer
from dattr_eval.explainers.features import FeatureExtractor, classifier_layer, extract_features
from dattr_eval.explainers.svm import CrammerSingerSVC
from dattr_eval.validation import check_positive, check_tensor

#: default regularisation (the 2024 paper's value). benchmarks/results/dualview_sparsity.md: on digits
#: MLP features the support fraction falls 1.00 / 0.74 / 0.25 / 0.09 for C = 1e-4 / 1e-3 / 1e-2 / 0.1,
#: but the solver's epochs grow ~6-10x per decade of C; raise C for sparser explanations.
DEFAULT_C = 1e-3


@register("dualview")
class DualView(Explainer):
    """DualView / DualDA (Yolcu et al. 2024): a linear Crammer–Singer SVM surrogate of the last layer.

    Fit: features ``phi_j (n_train, d)`` = the flattened input of the classifier layer (last
    ``nn.Linear`` or ``layer``), optionally z-scored per dimension with training mean/std
    (``normalize``), and the Crammer–Singer multiclass SVM on ``(phi_j, y_j)`` with the *training
    labels*, solved in the dual by ``dattr_eval.explainers.svm.CrammerSingerSVC``. Attribution of
    training sample ``j`` to class ``c`` of test input ``x``::

        A[x, j] = alpha_{j, c} * <phi_j, phi(x)>

    Rows sum to the surrogate logit ``w_c . phi(x)`` (the bias ``b_c = sum_j alpha_{j, c}`` of
    ``fit_intercept`` is left out of the kernel). Non-support vectors get exactly 0.
    ``self_influence`` = ``||phi_j||^2 alpha_{j, y_j}``.

    Args:
        C: SVM regularisation; larger C = sparser alpha on these problems (see the sweep).
        fit_intercept: append a constant feature (regularised, as liblinear) to the SVM.
        normalize: z-score the features with the training mean / population std (the 2024 version).
        tol: relative duality gap at which the solver stops.
        max_iter: solver epochs at most (a ``ConvergenceWarning`` when reached).
        layer: name of the classifier layer whose input is ``phi``; ``None`` = last ``nn.Linear``.
        batch_size: batch size of the forward passes.
        device: device of features and solver; ``None`` = the model's.
        method: the solver's ``method`` (``"auto"`` = compiled sequential dual CD on the CPU, block-parallel
            torch CD on CUDA; ``"sequential"``; ``"block"``), see ``CrammerSingerSVC``.
        seed: seed of the solver's sample order.

    Fitted attributes (read by other modules, e.g. the XDA heatmaps):
        ``train_features_`` ``(n_train, d)`` float32 phi of the training set (normalised if ``normalize``);
        ``feature_mean_``, ``feature_std_`` ``(d,)`` (only with ``normalize``);
        ``dual_coef_`` ``(n_train, K)`` float64 alpha, column c = class c;
        ``coef_`` ``(K, d)`` float64 ``== dual_coef_.T @ train_features_`` (in float64);
        ``intercept_`` ``(K,)`` (zeros without ``fit_intercept``);
        ``support_`` int64 indices of training samples with ``max_c |alpha_jc| >= 1e-6 C``;
        ``support_features_`` ``(n_sv, d)``, ``support_coef_`` ``(n_sv, K)`` float32 rows used by ``explain``;
        ``train_logits_`` ``(n_train, K)`` the model's logits; ``duality_gap_`` (relative), ``n_iter_``
        (solver epochs), ``fit_seconds_`` (solver only), ``feature_seconds_`` (forward pass), ``svm_``.

    Cost: one forward pass over the training set and the dual solve at ``fit``; one forward pass and
    one ``(n_test, d) x (d, n_sv)`` product per ``explain``. Memory: ``n_train x (d + K)``.
    """

    summary = (
        "DualView: dual variables of a Crammer-Singer SVM surrogate times feature inner products"
    )
    citation = (
        "Yolcu et al., DualView: Data Attribution from the Dual Perspective, arXiv:2402.12118, 2024"
    )

    def __init__(
        self,
        C: float = DEFAULT_C,
        fit_intercept: bool = False,
        normalize: bool = False,
        tol: float = 1e-3,
        max_iter: int = 10_000,
        layer: str | None = None,
        batch_size: int = 256,
        device: str | None = None,
        method: str = "auto",
        seed: int = 0,
    ) -> None:
        self.C = C
        self.fit_intercept = fit_intercept
        self.normalize = normalize
        self.tol = tol
        self.max_iter = max_iter
        self.layer = layer
        self.batch_size = batch_size
        self.device = device
        self.method = method
        self.seed = seed

    # ------------------------------------------------------------------ fit
    def _fit(self, model: nn.Module, train_dataset: Dataset) -> None:
        check_positive(self.batch_size, "batch_size", integer=True)
        t0 = time.perf_counter()
        raw, logits = extract_features(
            model, train_dataset, layer=self.layer, batch_size=self.batch_size, device=self.device_
        )
        self.feature_seconds_ = time.perf_counter() - t0
        if self.normalize:
            self.feature_mean_ = raw.mean(0)
            self.feature_std_ = raw.std(0, correction=0)
        phi = self._normalise(raw)
        svm = CrammerSingerSVC(
            C=self.C,
            fit_intercept=self.fit_intercept,
            tol=self.tol,
            max_iter=self.max_iter,
            device=self.device_,
            method=self.method,
            seed=self.seed,
        )
        self.svm_ = svm.fit(phi, self.train_labels_.to(self.device_), n_classes=logits.shape[1])
        self.train_features_ = phi
        self.train_logits_ = logits
        self.dual_coef_ = svm.dual_coef_
        self.coef_ = svm.coef_
        self.intercept_ = svm.intercept_
        self.support_ = svm.support_
        self.support_features_ = phi[svm.support_].contiguous()
        self.support_coef_ = svm.dual_coef_[svm.support_].float()
        self.duality_gap_ = svm.duality_gap_
        self.n_iter_ = svm.n_iter_
        self.fit_seconds_ = svm.fit_seconds_

    def _normalise(self, raw: torch.Tensor) -> torch.Tensor:
        if not self.normalize:
            return raw
        # constant dimensions (std 0) become 0 rather than NaN
        std = torch.where(
            self.feature_std_ > 0, self.feature_std_, torch.ones_like(self.feature_std_)
        )
        return (raw - self.feature_mean_) / std

    # ------------------------------------------------------------------ explain
    @torch.no_grad()
    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        """``phi(inputs)`` ``(b, d)`` float32 as used by the surrogate (normalised if ``normalize``)."""
        self._check_fitted()
        inputs = check_tensor(inputs, "inputs", min_ndim=1, floating=True, finite=True)
        extractor = FeatureExtractor(self.model_, self.layer)
        parts = [
            extractor(inputs[i : i + self.batch_size].to(self.device_))[0].float()
            for i in range(0, inputs.shape[0], self.batch_size)
        ]
        raw = torch.cat(parts) if parts else inputs.new_zeros(0, self.train_features_.shape[1])
        return self._normalise(raw)

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return support_attributions(
            self.features(inputs),
            targets,
            self.support_features_,
            self.support_coef_,
            self.support_,
            self.n_train_,
        )

    def _column_scorer(self, inputs: torch.Tensor, targets: torch.Tensor) -> ColumnScorer:
        """Support vectors ``start..stop-1`` only (others are exactly 0), ``(b, stop - start)``."""
        phi = self.features(inputs)

        def score(start: int, stop: int) -> torch.Tensor:
            rows = slice(start, stop)
            return support_attributions(
                phi,
                targets,
                self.support_features_[rows],
                self.support_coef_[rows],
                self.support_[rows],
                stop - start,
            )

        return ColumnScorer(score, self.support_.numel(), self.support_)

    def _self_influence(self) -> torch.Tensor:
        labels = self.train_labels_.to(self.dual_coef_.device)
        coef = self.dual_coef_.gather(1, labels[:, None]).squeeze(1)
        return coef.float() * (self.train_features_ * self.train_features_).sum(1)

    # ------------------------------------------------------------------ diagnostics
    @torch.no_grad()
    def fidelity_report(self) -> dict[str, float]:
        """How well the surrogate stands in for the model's last layer, on the training set.

        Returns a dict:
            ``weight_cosine``: mean over classes of cos(model weight row, surrogate weight row), the
            surrogate mapped back to raw features (``w / std``) when ``normalize``; NaN when the
            classifier layer has no ``(K, d)`` weight;
            ``prediction_accuracy``: share of training samples where argmax surrogate == argmax model;
            ``prediction_mcc``: multiclass Matthews correlation of those two predictions;
            ``logit_kendall_tau``: Kendall tau-b between model and surrogate logits per sample, mean;
            ``logit_cosine``: cosine of the two logit vectors per sample, mean;
            ``surrogate_train_accuracy``: surrogate prediction == training label;
            ``support_fraction``, ``duality_gap``.
        Surrogate logits omit the intercept, as in the authors' evaluation.
        """
        self._check_fitted()
        from sklearn.metrics import matthews_corrcoef

        surrogate = self.train_features_.double() @ self.coef_.double().T
        model_logits = self.train_logits_.double()
        pred_s, pred_m = surrogate.argmax(1), model_logits.argmax(1)
        return {
            "weight_cosine": self._weight_cosine(),
            "prediction_accuracy": float((pred_s == pred_m).double().mean()),
            "prediction_mcc": float(matthews_corrcoef(pred_m.cpu().numpy(), pred_s.cpu().numpy())),
            "logit_kendall_tau": float(kendall_tau_rows(model_logits, surrogate).mean()),
            "logit_cosine": float(
                torch.nn.functional.cosine_similarity(model_logits, surrogate, dim=1).mean()
            ),
            "surrogate_train_accuracy": float(
                (pred_s.cpu() == self.train_labels_.cpu()).double().mean()
            ),
            "support_fraction": self.support_.numel() / self.n_train_,
            "duality_gap": self.duality_gap_,
        }

    def _weight_cosine(self) -> float:
        weight = getattr(classifier_layer(self.model_, self.layer)[1], "weight", None)
        surrogate = self.coef_.double()
        if weight is None or tuple(weight.shape) != tuple(surrogate.shape):
            return float("nan")
        if self.normalize:
            std = torch.where(
                self.feature_std_ > 0, self.feature_std_, torch.ones_like(self.feature_std_)
            )
            surrogate = surrogate / std.double()
        cos = torch.nn.functional.cosine_similarity(weight.detach().double(), surrogate, dim=1)
        return float(cos.mean())


#: float32 entries per chunk of the in-place coefficient multiply in ``support_attributions`` (16 MB)
_SCALE_CHUNK = 1 << 22


def support_attributions(
    phi: torch.Tensor,
    targets: torch.Tensor,
    support_features: torch.Tensor,
    support_coef: torch.Tensor,
    support: torch.Tensor,
    n_train: int,
) -> torch.Tensor:
    """``A[i, j] = alpha_{j, t_i} <phi_j, phi_i>`` over the support set, scattered into ``(b, n_train)``.

    Args:
        phi: ``(b, d)`` test features; ``targets`` ``(b,)`` classes.
        support_features: ``(n_sv, d)`` support rows ``phi_j``; ``support_coef`` ``(n_sv, K)`` their alpha.
        support: ``(n_sv,)`` sorted column indices of the support rows; ``n_train`` the number of columns.

    One ``(b, d) x (d, n_sv)`` product, then the coefficient multiply in place, a few rows at a time
    (no ``(b, n_sv)`` coefficient matrix); when every training sample is a support vector the
    product is the output, otherwise it is copied into the support columns of a zero matrix.
    """
    scores = phi @ support_features.T
    coef_t = support_coef.T.contiguous()  # (K, n_sv): row t_i is what row i is multiplied by
    rows = max(1, _SCALE_CHUNK // max(scores.shape[1], 1))
    for start in range(0, scores.shape[0], rows):
        scores[start : start + rows].mul_(coef_t[targets[start : start + rows]])
    if scores.shape[1] == n_train:
        return scores
    return scores.new_zeros(scores.shape[0], n_train).index_copy_(1, support, scores)


def kendall_tau_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Kendall tau-b between rows of ``a`` and ``b`` (both ``(n, K)``), ``(n,)``; NaN for constant rows."""
    i, j = torch.triu_indices(a.shape[1], a.shape[1], offset=1, device=a.device)
    sa, sb = (a[:, i] - a[:, j]).sign(), (b[:, i] - b[:, j]).sign()
    return (sa * sb).sum(1) / ((sa * sa).sum(1) * (sb * sb).sum(1)).sqrt()
