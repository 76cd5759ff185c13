"""The ``dattr-eval`` command line: ``list``, ``run``, ``report``.

Examples::

    dattr-eval list
    dattr-eval run --benchmark digits-mislabel --explainers random,dualview --out results/d
    dattr-eval run --benchmark 'digits-*' --explainers all --out results/digits
    dattr-eval run --benchmark 'digits-*' --explainers all --out results/digits --backend ray --address auto
    dattr-eval report results/d
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from collections.abc import Sequence


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _explainer_params(assignments: Sequence[str]) -> dict[str, dict[str, object]]:
    """``["influence.solver=arnoldi", ...]`` -> ``{"influence": {"solver": "arnoldi"}}`` (values as Python literals)."""
    import ast

    params: dict[str, dict[str, object]] = {}
    for item in assignments:
        target, sep, raw = item.partition("=")
        name, dot, key = target.rpartition(".")
        if not sep or not dot or not name or not key:
            raise ValueError(f"--set expects EXPLAINER.PARAM=VALUE, got {item!r}")
        try:
            value: object = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw  # a bare string such as arnoldi
        params.setdefault(name, {})[key] = value
    return params


def _benchmark_names(patterns: Sequence[str]) -> list[str]:
    """Registry names matching each pattern (shell-style wildcards), in order, without repeats."""
    from dattr_eval import benchmarks

    names: list[str] = []
    for pattern in patterns:
        matched = (
            fnmatch.filter(benchmarks.names(), pattern)
            if any(c in pattern for c in "*?[")
            else [pattern]
        )
        if not matched:
            raise SystemExit(
                f"dattr-eval: --benchmark {pattern!r} matches no benchmark; see `dattr-eval list`"
            )
        for name in matched:
            benchmarks.REGISTRY.canonical(name)  # unknown names fail here, with close matches
            names.extend([name] if name not in names else [])
    return names


def _print_listing(title: str, summaries: dict[str, str]) -> None:
    print(f"{title}:")
    width = max((len(n) for n in summaries), default=0)
    for name, summary in summaries.items():
        print(f"  {name.ljust(width)}  {summary}")


def cmd_list(args: argparse.Namespace) -> int:
    import dattr_eval
    from dattr_eval import benchmarks

    listings = {
        "explainers": dattr_eval.available_explainers,
        "metrics": dattr_eval.available_metrics,
        "benchmarks": benchmarks.summaries,
    }
    for kind in [args.kind] if args.kind else list(listings):
        _print_listing(kind, listings[kind]())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from dattr_eval import explainers as registry
    from dattr_eval.evaluation import Evaluator
    from dattr_eval.evaluation.evaluator import builtin_explainers
    from dattr_eval.evaluation.report import leaderboard, to_markdown

    names = builtin_explainers() if args.explainers.strip() == "all" else _split(args.explainers)
    overrides = _explainer_params(args.set or [])
    unknown = set(overrides) - set(names)
    if unknown:
        raise ValueError(f"--set names explainer(s) {sorted(unknown)} that are not in --explainers")
    explainers = {n: registry.create(n, **overrides.get(n, {})) for n in names}
    if args.address is not None and args.backend != "ray":
        raise ValueError("--address needs --backend ray")
    evaluator = Evaluator(
        _benchmark_names(args.benchmark),
        explainers,
        metrics=_split(args.metrics) if args.metrics else None,
        out_dir=args.out,
        device=args.device,
        batch_size=args.batch_size,
        cache_dir=args.cache_dir,
        data_dir=args.data_dir,
        progress=not args.no_progress,
        xda={"n_test": args.xda_n_test} if args.xda else False,
        backend=args.backend,
        ray_address=args.address,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
    )
    results = evaluator.run()
    print(to_markdown(leaderboard(results)))
    print(
        f"\nresults: {evaluator.store.path}  (make the report with: dattr-eval report {args.out})"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from dattr_eval.evaluation.report import report, to_markdown

    board = report(args.out_dir, figures=not args.no_figures)
    print(to_markdown(board))
    print(
        f"\nwritten: {args.out_dir}/leaderboard.html, leaderboard.md, leaderboard.csv"
        + ("" if args.no_figures else " and figures (PNG)")
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dattr-eval", description="Score training-data attribution methods."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_list = sub.add_parser("list", help="list explainers, metrics and benchmarks with summaries")
    p_list.add_argument("kind", nargs="?", choices=["explainers", "metrics", "benchmarks"])
    p_list.set_defaults(func=cmd_list)

    p_run = sub.add_parser("run", help="evaluate explainers on benchmarks; results go to --out")
    p_run.add_argument(
        "--benchmark",
        action="append",
        required=True,
        help="benchmark name or wildcard pattern ('digits-*'); repeat for several",
    )
    p_run.add_argument(
        "--explainers",
        required=True,
        help="comma-separated explainer names, or 'all' (the built-in ones; peer adapters by name)",
    )
    p_run.add_argument(
        "--set",
        action="append",
        metavar="EXPLAINER.PARAM=VALUE",
        help="explainer hyperparameter, e.g. influence.solver=arnoldi; repeat for several",
    )
    p_run.add_argument(
        "--metrics", help="comma-separated metric names (default: each benchmark's own)"
    )
    p_run.add_argument("--out", required=True, help="output directory (a rerun resumes there)")
    p_run.add_argument("--device", default=None, help="cpu (default) or cuda")
    p_run.add_argument(
        "--batch-size", type=int, default=64, help="test samples per explained batch"
    )
    p_run.add_argument(
        "--data-dir", default=None, help="dataset files for benchmarks that are not bundled"
    )
    p_run.add_argument(
        "--cache-dir", default=None, help="trained-model cache (default ~/.cache/dattr_eval)"
    )
    p_run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p_run.add_argument(
        "--xda",
        action="store_true",
        help="also score DualView's LRP pair heatmaps with Quantus (image benchmarks)",
    )
    p_run.add_argument(
        "--xda-n-test", type=int, default=16, help="test points the XDA benchmark explains"
    )
    p_run.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="run each benchmark × explainer cell in this process (default) or as a Ray task",
    )
    p_run.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join: 'auto' (this machine's cluster), 'ray://HEAD:10001'; "
        "default: start a local one",
    )
    p_run.add_argument("--num-cpus", type=float, default=1, help="CPUs each Ray task reserves")
    p_run.add_argument(
        "--num-gpus", type=float, default=0, help="GPUs each Ray task reserves (with --device cuda)"
    )
    p_run.set_defaults(func=cmd_run)

    p_report = sub.add_parser(
        "report", help="write the leaderboard (Markdown, HTML, figures) of a results directory"
    )
    p_report.add_argument("out_dir")
    p_report.add_argument("--no-figures", action="store_true")
    p_report.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dattr-eval`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (KeyError, FileNotFoundError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"dattr-eval {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
