"""tracin vs Captum ``TracInCP`` and trak vs ``traker`` on the same digits CNN, checkpoints and seeds.

Run from the repository root in a venv with the ``peers`` extra (``.ci/peers`` makes one,
``.venv-peers``); the peers run through their registered adapters (``captum.tracin``,
``traker.trak``)::

    .venv-peers/bin/python benchmarks/compare_tracin_trak.py

Writes ``benchmarks/results/compare_tracin_trak.md``. Setup: 1,000 digits for training, 200 test
points explained for the final model's prediction; the CNN of ``benchmarks/digits_cnn.py`` trained
by SGD (lr 0.1, 12 epochs) with 3 checkpoints. TRAK: projection to 512 dimensions, traker's CPU
``BasicProjector`` (Gaussian) and float32.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from torch.utils.data import TensorDataset

from dattr_eval import explainers
from dattr_eval.explainers.adapters.traker import traker_projection
from dattr_eval.explainers.gradients import grad_dim
from dattr_eval.explainers.trak import TRAK

sys.path.insert(0, str(Path(__file__).parent))
from _child import interpreter
from digits_cnn import accuracy, digits, machine_line, train_with_checkpoints

N_TRAIN, N_TEST, PROJ = 1000, 200, 512
RESULTS = Path(__file__).parent / "results" / "compare_tracin_trak.md"


def agreement(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, float]:
    """Pearson and Spearman over all entries, and the mean per-test-row Spearman (NaN for vectors)."""
    a, b = a.double().numpy(), b.double().numpy()
    rows = np.mean([spearmanr(x, y)[0] for x, y in zip(a, b)]) if a.ndim == 2 else float("nan")
    return (
        float(pearsonr(a.ravel(), b.ravel())[0]),
        float(spearmanr(a.ravel(), b.ravel())[0]),
        float(rows),
    )


def captum_tracincp(model, dataset, x, targets, paths, lrs) -> tuple[torch.Tensor, torch.Tensor]:
    """Captum ``TracInCP`` (adapter ``captum.tracin``): scores ``(n_test, n_train)`` and self-influence."""
    peer = explainers.create("captum.tracin", checkpoints=paths, learning_rates=lrs, batch_size=64)
    peer.fit(model, dataset)
    return peer.explain(x, targets), peer.self_influence()


def traker_scores(model, dataset, x, targets, states, seed: int) -> torch.Tensor:
    """traker's ``TRAKer`` (adapter ``traker.trak``, ``BasicProjector``, float32), ``(n_test, n_train)``."""
    peer = explainers.create("traker.trak", checkpoints=states, projection_dim=PROJ, seed=seed)
    return peer.fit(model, dataset).explain(x, targets)


class TRAKWithTrakerProjection(TRAK):
    """Our ``trak``, projecting with traker's matrices (to separate the formula from the randomness)."""

    def _projector(self, model, member):
        dim = grad_dim(model, self.params)
        matrix = traker_projection(dim, self.projection_dim, self.seed, member, block_size=100)
        return lambda g: g @ matrix.to(g.device)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    torch.manual_seed(0)
    start_all = time.perf_counter()
    train, test = digits(N_TRAIN, N_TEST)
    rows: list[str] = []

    def row(what: str, a: torch.Tensor, b: torch.Tensor, note: str) -> None:
        p, s, rs = agreement(a, b)
        rows.append(f"| {what} | {p:.6f} | {s:.6f} | {rs:.4f} | {note} |")

    with tempfile.TemporaryDirectory() as tmp:
        model, paths, lrs = train_with_checkpoints(train, tmp)
        states = [torch.load(p, weights_only=True) for p in paths]
        targets = model(test[0]).argmax(1)
        dataset = TensorDataset(*train)
        times = []

        # ------------------------------------------------------------ TracIn
        (theirs, their_si), t_peer = timed(
            lambda: captum_tracincp(model, dataset, test[0], targets, paths, lrs)
        )
        ours = explainers.create("tracin", checkpoints=paths, learning_rates=lrs)
        a, t_ours = timed(lambda: ours.fit(model, dataset).explain(test[0], targets))
        rel = float((a - theirs).abs().max() / theirs.abs().max())
        row(
            "tracin vs Captum TracInCP (3 checkpoints)",
            a,
            theirs,
            f"max abs diff / max abs = {rel:.1e}",
        )
        row(
            "tracin self_influence vs Captum",
            ours.self_influence(),
            their_si,
            "closed form vs Captum's loop",
        )
        times.append(
            f"| tracin (3 checkpoints, exact gradients) | {t_ours:.1f} | Captum TracInCP | {t_peer:.1f} | {t_peer / t_ours:.1f}x |"
        )

        # ------------------------------------------------------------ TRAK, one model
        final = [model.state_dict()]
        tk0, t_peer = timed(lambda: traker_scores(model, dataset, test[0], targets, final, seed=0))
        tk1 = traker_scores(model, dataset, test[0], targets, final, seed=1)
        same = (
            TRAKWithTrakerProjection(projection_dim=PROJ, seed=0)
            .fit(model, dataset)
            .explain(test[0], targets)
        )
        ours0, t_ours = timed(
            lambda: (
                explainers.create("trak", projection_dim=PROJ, seed=0)
                .fit(model, dataset)
                .explain(test[0], targets)
            )
        )
        ours1 = (
            explainers.create("trak", projection_dim=PROJ, seed=1)
            .fit(model, dataset)
            .explain(test[0], targets)
        )
        ratio = (tk0 / same)[same.abs() > 1e-3 * same.abs().max()]
        row(
            "trak vs traker, same projection matrix (1 model)",
            same,
            tk0,
            f"traker / ours = {float(ratio.median()):.4f} (IQR {float(ratio.quantile(0.25)):.4f}-{float(ratio.quantile(0.75)):.4f}): a constant",
        )
        row(
            "trak (own projection, seed 0) vs traker (seed 0)",
            ours0,
            tk0,
            "different random matrices",
        )
        row("traker seed 0 vs traker seed 1 (the randomness floor)", tk0, tk1, "peer vs itself")
        row("trak seed 0 vs trak seed 1", ours0, ours1, "ours vs itself")
        times.append(
            f"| trak (1 model, k={PROJ}) | {t_ours:.1f} | traker (BasicProjector) | {t_peer:.1f} | {t_peer / t_ours:.1f}x |"
        )

        # ------------------------------------------------------------ TRAK, ensemble of checkpoints
        tk_ens = traker_scores(model, dataset, test[0], targets, states, seed=0)
        same_ens = TRAKWithTrakerProjection(projection_dim=PROJ, seed=0, checkpoints=states)
        same_ens.fit(model, dataset)
        a_ens = same_ens.explain(test[0], targets)
        row(
            "trak vs traker, same projections, 3-checkpoint ensemble",
            a_ens,
            tk_ens,
            "traker weights member m by 1 / mean|(Phi_m^T Phi_m)^{-1}|, ours equally",
        )
        weighted = 0.0
        for m, features in enumerate(same_ens.train_features_):
            phi = same_ens._gradients(dataset, m).double()
            weight = 1 / torch.linalg.inv(phi.T @ phi).abs().mean()
            weighted = weighted + weight * (
                same_ens._gradients((test[0], targets), m).double() @ features.T.double()
            )
        row(
            "  same, ours re-weighted as traker does",
            (weighted * same_ens.out_to_loss_).float(),
            tk_ens,
            "formula check of the ensemble",
        )
        ens0 = explainers.create("trak", checkpoints=states, projection_dim=PROJ).fit(
            model, dataset
        )
        row(
            "trak (own projections) vs traker, 3-checkpoint ensemble",
            ens0.explain(test[0], targets),
            tk_ens,
            "different random matrices and member weights",
        )

    acc = accuracy(model, test)
    text = "\n".join(
        [
            "# tracin vs Captum TracInCP, trak vs traker",
            "",
            f"- date: {machine_line()}; captum {__import__('captum').__version__}, traker 0.3.2",
            (
                f"- command: `{interpreter()} benchmarks/compare_tracin_trak.py` "
                f"({time.perf_counter() - start_all:.0f} s in all)"
            ),
            (
                f"- setup: digits, {N_TRAIN} train / {N_TEST} test (seeded shuffle), CNN of "
                f"`benchmarks/digits_cnn.py` (18,346 parameters) trained by plain SGD (lr 0.1, batch 32, "
                f"12 epochs; test accuracy {acc:.3f}); checkpoints after epochs 4, 8, 12; test points "
                "explained for the final model's prediction. TRAK: margin gradients projected to "
                f"k = {PROJ} (Gaussian), float32, no regularisation."
            ),
            "- Pearson / Spearman over all 200 x 1000 entries; row Spearman = mean over test points.",
            "",
            "| comparison | Pearson | Spearman | row Spearman | note |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "## Time (fit + explain of the 200 test points, seconds, same run)",
            "",
            "| ours | s | peer | s | peer / ours |",
            "|---|---|---|---|---|",
            *times,
            "",
        ]
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
