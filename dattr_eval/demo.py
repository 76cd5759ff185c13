"""A short demo on the bundled digits: ``python -m dattr_eval.demo --out DIR``.

Trains (or loads from the cache) the default digits CNN, fits the ``random`` baseline and, when
registered, ``dualview``, explains a few test points and writes ``DIR/demo.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from dattr_eval import explainers
from dattr_eval.contract import topk
from dattr_eval.data import load_digits
from dattr_eval.models import ModelCache, TrainRecipe, accuracy


def run(
    out: Path,
    n_test: int = 5,
    cache_dir: Path = Path(".dattr_cache"),
    recipe: TrainRecipe | None = None,
) -> str:
    """Run the demo, write ``out/demo.md`` and return its text (``recipe``: default ``TrainRecipe()``)."""
    split = load_digits()
    recipe = recipe or TrainRecipe()
    start = time.perf_counter()
    model = ModelCache(cache_dir / "models").get_or_train(recipe, split.train, tag="demo").model
    seconds = time.perf_counter() - start
    x, y = split.test.inputs[:n_test], split.test.targets[:n_test]
    lines = [
        "# dattr_eval demo (scikit-learn digits)",
        "",
        (
            f"- model: `{recipe.arch}`, {recipe.epochs} epochs, lr {recipe.lr}; test accuracy "
            f"{accuracy(model, split.test):.3f} ({len(split.train)} train / {len(split.test)} test; "
            f"trained or loaded in {seconds:.1f} s)"
        ),
        "",
        "| explainer | test index | label | top-3 training indices (their labels) |",
        "|---|---|---|---|",
    ]
    names = [n for n in ("random", "dualview") if n in explainers.names()]
    for name in names:
        explainer = explainers.create(name).fit(model, split.train)
        attributions = explainer.explain(x, y)
        _, idx = topk(attributions, 3)
        for i in range(n_test):
            tops = ", ".join(f"{int(j)} ({int(split.train.targets[j])})" for j in idx[i])
            lines.append(f"| {name} | {i} | {int(y[i])} | {tops} |")
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/digits"), help="output directory")
    parser.add_argument("--n-test", type=int, default=5, help="test points to explain")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    print(run(args.out, args.n_test))


if __name__ == "__main__":
    main()
