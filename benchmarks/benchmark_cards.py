"""Benchmark cards of the built-in benchmarks, before and after the training-recipe change.

"before" builds each benchmark with the recipe the family had before the change (``BEFORE``
below, kept here as the reference), "after" with the recipe in ``FAMILIES`` now; everything else
(data, perturbation, seed, test subset) is the same. Models are cached under ``--cache-dir``.

    OMP_NUM_THREADS=2 /work/main/.venv/bin/python benchmarks/benchmark_cards.py \\
        [--families digits] [--cache-dir /tmp/dattr_cards]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
from pathlib import Path
from typing import Any

import torch

from dattr_eval import benchmarks
from dattr_eval.benchmarks.builtin import FAMILIES, TASKS, Family
from dattr_eval.benchmarks.card import (
    FLIPPED_MIN_FIT,
    OVERCONFIDENT_MEDIAN,
    SHORTCUT_MIN_RATE,
    benchmark_card,
)
from dattr_eval.data.loading import subset_inputs
from dattr_eval.models import TrainRecipe

OUT = Path(__file__).parent / "results" / "benchmark_cards.md"

#: the families' recipes before this change (epochs, lr; TrainRecipe defaults otherwise)
BEFORE: dict[str, tuple[tuple[str, Any], ...]] = {
    "digits": (("epochs", 30), ("lr", 0.05)),
    "mnist5k": (("epochs", 15), ("lr", 0.05)),
    "fmnist": (("epochs", 10), ("lr", 0.05)),
    "cifar10": (("epochs", 30), ("lr", 0.05)),
}


def card_for(name: str, family: Family, cache_dir: Path, data_dir, seed: int = 0) -> dict[str, Any]:
    """The card of benchmark ``name`` built with ``family``'s recipes and ``seed`` (clean test
    inputs for shortcut)."""
    registered = benchmarks.get(name)
    spec = type(registered.__name__, (registered,), {"family": family})(seed=seed)
    bench = spec.build(cache_dir=cache_dir, data_dir=data_dir)
    clean = None
    if bench.truth.shortcut_class is not None:
        clean = subset_inputs(family.load(data_dir).test, bench.truth.test_indices)[0]
    recipe = TrainRecipe(
        arch=family.arch,
        n_classes=int(bench.truth.n_classes),
        in_channels=family.in_channels,
        seed=bench.seed,
        **family.recipe_for(spec.task),
    )
    return benchmark_card(bench, clean_test_inputs=clean, recipe=recipe)


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if 1e-3 <= abs(value) <= 1e3 or value == 0 else f"{value:.1e}"
    return str(value)


def rows(card: dict[str, Any]) -> dict[str, str]:
    """The card's fields as display strings (one table row each)."""
    recipe = card["recipe"]
    out = {
        "recipe": f"epochs {recipe['epochs']}, lr {recipe['lr']}, weight decay {recipe['weight_decay']}, "
        f"batch {recipe['batch_size']}, {recipe['optimizer']}",
        "test accuracy (explained points)": fmt(card["test_accuracy"]),
    }
    if "test_accuracy_clean" in card:
        out["test accuracy, same points unmarked"] = fmt(card["test_accuracy_clean"])
    out["train accuracy"] = fmt(card["train_accuracy"])
    q = card["train_one_minus_p"]
    out["1−p(train label): q05 / median / q95"] = " / ".join(
        fmt(q[k]) for k in ("q05", "median", "q95")
    )
    if "mislabel" in card:
        m = card["mislabel"]
        out["flipped labels fitted"] = f"{fmt(m['flipped_fit'])} of {m['n_flipped']}"
        out["1−p on flipped: median"] = fmt(m["flipped_one_minus_p"]["median"])
        out["AUROC of 1−p for flipped vs clean (loss alone)"] = fmt(m["flipped_loss_auroc"])
    if "shortcut" in card:
        s = card["shortcut"]
        out["marked other-class test images → shortcut class"] = (
            f"{fmt(s['shortcut_rate'])} of {s['n_test_other_class']}"
        )
        marked = s["marked_train_one_minus_p"]
        out["1−p on marked training images: median"] = fmt(marked["median"] if marked else None)
    out["flags"] = "<br>".join(card["flags"]) or "none"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", default="digits", help="comma-separated family prefixes")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/dattr_cards"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--other-seeds", default="1,2", help="seeds whose 'after' cards are summarised too"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.UTC)
    prefixes = [p for p in args.families.split(",") if p]
    families = {f.prefix: f for f in FAMILIES}
    sections, cards = [], {}
    for prefix in prefixes:
        family = families[prefix]
        for task in TASKS:
            name = f"{prefix}-{task.task}"
            previous = dataclasses.replace(family, recipe=BEFORE[prefix], task_recipes=())
            before = card_for(name, previous, args.cache_dir, args.data_dir)
            after = card_for(name, family, args.cache_dir, args.data_dir)
            cards[name] = {"before": before, "after": after}
            a, b = rows(before), rows(after)
            sections += [f"### {name}", "", "| | before | after |", "|---|---|---|"]
            sections += [f"| {key} | {a.get(key, '–')} | {b.get(key, '–')} |" for key in b]
            sections.append("")
            print(name, "before", before["flags"], "after", after["flags"], flush=True)
    other_seeds = [int(v) for v in args.other_seeds.split(",") if v]
    if other_seeds:
        sections += [
            "## Other seeds (after)",
            "",
            (
                "Each benchmark rebuilt with another seed (perturbation, model, test subset), as "
                "replicates will be."
            ),
            "",
            "| benchmark | seed | test accuracy | median 1−p | task-specific | flags |",
            "|---|---|---|---|---|---|",
        ]
        for prefix in prefixes:
            for task in TASKS:
                name = f"{prefix}-{task.task}"
                for seed in other_seeds:
                    card = card_for(name, families[prefix], args.cache_dir, args.data_dir, seed)
                    cards[name][f"after_seed_{seed}"] = card
                    row = rows(card)
                    specific = "; ".join(
                        f"{key}: {row[key]}"
                        for key in (
                            "test accuracy, same points unmarked",
                            "flipped labels fitted",
                            "marked other-class test images → shortcut class",
                            "1−p on marked training images: median",
                        )
                        if key in row
                    )
                    sections.append(
                        f"| {name} | {seed} | {row['test accuracy (explained points)']} | "
                        f"{fmt(card['train_one_minus_p']['median'])} | {specific or '–'} | "
                        f"{row['flags']} |"
                    )
                    print(name, seed, card["flags"], flush=True)
        sections.append("")
    load_after = os.getloadavg()
    header = [
        "# Benchmark cards: before and after the recipe change",
        "",
        (
            f"Date: {started:%Y-%m-%d %H:%M} UTC. Machine: {os.cpu_count()} cores (shared), torch threads "
            f"{torch.get_num_threads()}, torch {torch.__version__}. Load average (1/5/15 min) "
            f"{'/'.join(f'{v:.2f}' for v in load_before)} before, "
            f"{'/'.join(f'{v:.2f}' for v in load_after)} after."
        ),
        (
            f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '2')} /work/main/.venv/bin/python "
            f"benchmarks/benchmark_cards.py --families {args.families} --other-seeds "
            f"{args.other_seeds}`"
        ),
        "",
        (
            "Cards from `dattr_eval.benchmarks.card.benchmark_card`; seed 0, the default test subsets. "
            f"Flags: median 1−p(train label) < {OVERCONFIDENT_MEDIAN:.0e} on the training set or on "
            f"the samples the metric looks for (flipped, marked); marked other-class test images "
            f"predicted as the shortcut class < {SHORTCUT_MIN_RATE:.0%}; flipped labels fitted "
            f"< {FLIPPED_MIN_FIT:.0%}."
        ),
        "",
        (
            "What changed (digits): weight decay 5e-4 → 2e-3 for every task, which keeps the "
            "model from fitting its training set — above all the marked shortcut images — beyond "
            "the point where loss gradients vanish, at a small cost in test accuracy; and the "
            "mislabel task gets its own recipe (`Family.task_recipes`: 100 epochs, weight decay "
            "5e-4) so that the model memorises the flipped labels instead of leaving most of them "
            "as high-loss outliers that training loss alone finds. Memorising 20 % label noise "
            "costs test accuracy; that is the set-up in which mislabel detection tests more than "
            "the loss. mnist5k, fmnist and cifar10 recipes are unchanged and not measured here "
            "(each model trains for minutes on 2 shared cores; run this script with "
            "`--families mnist5k` to check them)."
        ),
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + sections))
    args.out.with_suffix(".json").write_text(json.dumps(cards, indent=1))
    print("\n".join(header + sections))


if __name__ == "__main__":
    main()
