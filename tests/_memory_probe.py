"""Measure explainers' peak memory beside their estimate, in a fresh process (run by a test).

``python -m tests._memory_probe CASES_JSON`` prints one JSON line per case:
``{"case", "estimate", "measured"}`` in bytes. Each case is warmed up on 8 samples first (so
lazily loaded code and thread pools are not counted, as in a long evaluation run), then
``fit`` + ``explain`` of one test batch + ``self_influence`` run under
:class:`~dattr_eval.evaluation.profiling.MemorySampler` (1 ms sampling). Run with a fixed
``MALLOC_MMAP_THRESHOLD_`` so that freed blocks go back to the system between cases.
"""

from __future__ import annotations

import gc
import json
import sys

import torch
from torch.utils.data import TensorDataset

from dattr_eval import explainers
from dattr_eval.evaluation.profiling import MemorySampler
from dattr_eval.explainers.memory import estimate_explainer_memory
from dattr_eval.models import DigitsCNN
from tests._digits_models import digits_split

N_TRAIN, N_TEST = 400, 64


def checkpoints(model: torch.nn.Module) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(5)
    noisy = {
        k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in model.state_dict().items()
    }
    return [noisy, model.state_dict()]


def run(name: str, hyper: dict, model, train, x_test) -> tuple[int, int]:
    def make():
        return explainers.create(name, **hyper)

    small = TensorDataset(*(t[:8] for t in train.tensors))
    warm = make().fit(model, small)
    if name != "loss":
        warm.explain(x_test[:2])
    warm.self_influence()
    del warm
    gc.collect()
    estimate = estimate_explainer_memory(make(), model, train, N_TEST, N_TEST)
    with MemorySampler(interval_s=0.001) as memory:
        xpl = make().fit(model, train)
        if name != "loss":
            xpl.explain(x_test)
        xpl.self_influence()
        del xpl
    gc.collect()
    return estimate, int(memory.rss_increase_mb * 2**20)


def main() -> None:
    torch.set_num_threads(1)
    train, x_test, _ = digits_split(N_TRAIN, N_TEST)
    train = TensorDataset(train.tensors[0].reshape(-1, 1, 8, 8), train.tensors[1])
    x_test = x_test.reshape(-1, 1, 8, 8)
    torch.manual_seed(0)
    model = DigitsCNN().eval()
    for label, name, hyper in json.loads(sys.argv[1]):
        hyper = {k: checkpoints(model) if v == "<checkpoints>" else v for k, v in hyper.items()}
        estimate, measured = run(name, hyper, model, train, x_test)
        print(json.dumps({"case": label, "estimate": estimate, "measured": measured}), flush=True)


if __name__ == "__main__":
    main()
