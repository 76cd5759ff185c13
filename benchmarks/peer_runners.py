"""Peer implementations run on the same model and data as ours (Captum, traker, kronfluence).

Imported by ``benchmarks/compare_tracin_trak.py``, ``benchmarks/explainers_speed.py`` and the
``@pytest.mark.peers`` tests. Each runner imports its package lazily and returns attributions in
our layout ``(n_test, n_train)``. The packages live in a separate venv that reuses the project's
torch, e.g.::

    python3.11 -m venv /tmp/peer4-venv
    echo "import site; site.addsitedir('/work/main/.venv/lib/python3.11/site-packages')" \
        > /tmp/peer4-venv/lib/python3.11/site-packages/main_venv.pth
    /tmp/peer4-venv/bin/pip install captum traker kronfluence

(``.venv/bin/python -m venv --system-site-packages`` does not see ``.venv``'s packages: its base
is the interpreter ``.venv`` was made from.)
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

#: ``timer(phase)`` returns a context manager timing ``"fit"`` or ``"explain"`` (e.g. ``PhaseTimer``)
Timer = Callable[[str], contextlib.AbstractContextManager]


def _no_timer(_phase: str) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def captum_tracincp(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    checkpoints: Sequence[str],
    learning_rates: Sequence[float],
    *,
    batch_size: int = 64,
    timer: Timer = _no_timer,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Captum ``TracInCP`` (cross-entropy, per-sample gradients by loop): ``(n_test, n_train)`` and self-influence.

    ``checkpoints`` are paths of ``torch.save(state_dict)`` files; ``learning_rates`` one each.
    """
    from captum.influence import TracInCP

    lr_of = dict(zip(map(str, checkpoints), learning_rates))

    def load(net: nn.Module, path: str) -> float:
        net.load_state_dict(torch.load(path, weights_only=True))
        return lr_of[str(path)]

    with timer("fit"):
        peer = TracInCP(
            copy.deepcopy(model),
            TensorDataset(*train),
            checkpoints=[str(c) for c in checkpoints],
            checkpoints_load_func=load,
            loss_fn=nn.CrossEntropyLoss(reduction="none"),
            batch_size=batch_size,
            sample_wise_grads_per_batch=False,
        )
    with timer("explain"):
        scores = peer.influence(test, show_progress=False).detach()
    return scores, peer.self_influence(show_progress=False).detach()


def traker_projection(
    grad_dim: int, proj_dim: int, seed: int, model_id: int, block_size: int = 100
) -> torch.Tensor:
    """The ``(grad_dim, proj_dim)`` Gaussian matrix of traker's ``BasicProjector`` for ``model_id``.

    Block ``i`` (``block_size`` columns) is drawn from ``manual_seed(seed + 1000 i + 100000 model_id)``.
    """
    blocks = []
    for i, start in enumerate(range(0, proj_dim, block_size)):
        gen = torch.Generator().manual_seed(seed + int(1e3) * i + int(1e5) * model_id)
        block = torch.empty(grad_dim, block_size).normal_(generator=gen)
        blocks.append(block[:, : min(block_size, proj_dim - start)])
    return torch.cat(blocks, 1)


def traker_scores(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    checkpoints: Sequence[dict[str, torch.Tensor]],
    *,
    proj_dim: int,
    seed: int = 0,
    batch_size: int = 64,
    block_size: int = 100,
    save_dir: str | Path | None = None,
    timer: Timer = _no_timer,
) -> torch.Tensor:
    """traker's ``TRAKer`` (image classification, CPU ``BasicProjector``, float32): ``(n_test, n_train)``.

    Each checkpoint is one model of the ensemble (``model_id`` = its index); the test inputs are
    scored for the classes in ``test[1]``. ``block_size`` must be below ``proj_dim``: with one
    block, traker 0.3.2 frees the matrix after ``finalize_features`` and fails at ``score``.
    """
    from trak import TRAKer
    from trak.projectors import BasicProjector, ProjectionType

    net = copy.deepcopy(model).eval()
    grad_dim = sum(p.numel() for p in net.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        with timer("fit"):
            projector = BasicProjector(
                grad_dim, proj_dim, seed, ProjectionType.normal, "cpu", block_size=block_size
            )
            traker = TRAKer(
                model=net,
                task="image_classification",
                train_set_size=train[0].shape[0],
                save_dir=str(save_dir or tmp),
                device="cpu",
                projector=projector,
                proj_dim=proj_dim,
                use_half_precision=False,
                projector_seed=seed,
                logging_level=40,
            )
            for model_id, state in enumerate(checkpoints):
                traker.load_checkpoint(state, model_id=model_id)
                for i in range(0, train[0].shape[0], batch_size):
                    batch = (train[0][i : i + batch_size], train[1][i : i + batch_size])
                    traker.featurize(batch=batch, num_samples=batch[0].shape[0])
            traker.finalize_features()
        with timer("explain"):
            for model_id, state in enumerate(checkpoints):
                traker.start_scoring_checkpoint(
                    exp_name="test",
                    checkpoint=state,
                    model_id=model_id,
                    num_targets=test[0].shape[0],
                )
                for i in range(0, test[0].shape[0], batch_size):
                    batch = (test[0][i : i + batch_size], test[1][i : i + batch_size])
                    traker.score(batch=batch, num_samples=batch[0].shape[0])
            scores = torch.as_tensor(traker.finalize_scores(exp_name="test").copy())
    return scores.T.float()


def trak_with_traker_projection(proj_dim: int, seed: int = 0, block_size: int = 100, **hyper):
    """Our ``trak`` explainer, but projecting with traker's matrices (to separate formula from randomness)."""
    from dattr_eval.explainers.gradients import grad_dim
    from dattr_eval.explainers.trak import TRAK

    class TRAKWithTrakerProjection(TRAK):
        def _projector(self, model: nn.Module, member: int):
            dim = grad_dim(model, self.params)
            matrix = traker_projection(dim, proj_dim, seed, member, block_size)
            return lambda g: g @ matrix.to(g.device)

    return TRAKWithTrakerProjection(projection_dim=proj_dim, seed=seed, **hyper)


def captum_arnoldi(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    checkpoint: str,
    *,
    projection_dim: int = 50,
    arnoldi_dim: int = 200,
    batch_size: int = 64,
    seed: int = 0,
    timer: Timer = _no_timer,
) -> torch.Tensor:
    """Captum ``ArnoldiInfluenceFunction`` (cross-entropy) at ``checkpoint``, ``(n_test, n_train)``."""
    from captum.influence._core.arnoldi_influence_function import ArnoldiInfluenceFunction

    def load(net: nn.Module, path: str) -> float:
        net.load_state_dict(torch.load(path, weights_only=True))
        return 1.0

    with timer("fit"):
        peer = ArnoldiInfluenceFunction(
            copy.deepcopy(model),
            TensorDataset(*train),
            str(checkpoint),
            checkpoints_load_func=load,
            loss_fn=nn.CrossEntropyLoss(reduction="none"),
            batch_size=batch_size,
            projection_dim=projection_dim,
            arnoldi_dim=arnoldi_dim,
            seed=seed,
        )
    with timer("explain"):
        return peer.influence(test, show_progress=False).detach()


def kronfluence_ekfac(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    batch_size: int = 64,
    timer: Timer = _no_timer,
) -> torch.Tensor:
    """kronfluence EK-FAC influence (cross-entropy train loss and measurement), ``(n_test, n_train)``.

    Sign: kronfluence scores are positive for training samples whose upweighting lowers the
    measurement (the test loss), as ours.
    """
    import torch.nn.functional as F
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.task import Task

    class Classification(Task):
        def compute_train_loss(self, batch, model, sample=False):
            x, y = batch
            logits = model(x)
            if sample:
                with torch.no_grad():
                    y = torch.multinomial(logits.softmax(1), 1).flatten()
            return F.cross_entropy(logits, y, reduction="sum")

        def compute_measurement(self, batch, model):
            x, y = batch
            return F.cross_entropy(model(x), y, reduction="sum")

    task = Classification()
    with tempfile.TemporaryDirectory() as tmp:
        with timer("fit"):
            net = prepare_model(copy.deepcopy(model), task)
            analyzer = Analyzer(
                analysis_name="speed",
                model=net,
                task=task,
                cpu=True,
                disable_tqdm=True,
                disable_model_save=True,
                output_dir=tmp,
            )
            analyzer.fit_all_factors(
                factors_name="ekfac",
                dataset=TensorDataset(*train),
                per_device_batch_size=batch_size,
                overwrite_output_dir=True,
            )
        with timer("explain"):
            analyzer.compute_pairwise_scores(
                scores_name="scores",
                factors_name="ekfac",
                query_dataset=TensorDataset(*test),
                train_dataset=TensorDataset(*train),
                per_device_query_batch_size=test[0].shape[0],
                per_device_train_batch_size=batch_size,
                overwrite_output_dir=True,
            )
            scores = analyzer.load_pairwise_scores("scores")["all_modules"]
    return scores.float()
