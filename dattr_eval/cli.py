"""The ``dattr-eval`` command line: ``list``, ``run``, ``meta``, ``report``, ``compare``.

Examples::

    dattr-eval list explainers
    dattr-eval run --benchmark digits-mislabel --explainers random,dualview --out results/d
    dattr-eval run --benchmark 'digits-*' --explainers all --replicates 3 --out results/digits
    dattr-eval run --benchmark 'digits-*' --explainers all --out results/digits --backend ray --address auto
    dattr-eval run --benchmark 'digits-*' --explainers mypkg.attribution:MyExplainer \
        --baseline results/digits --out results/mine
    dattr-eval meta --benchmark 'digits-*' --explainers dualview,representer,trak --out results/meta
    dattr-eval report results/d
    dattr-eval compare results/mine --between mypkg.attribution:MyExplainer dualview
    dattr-eval compare results/old results/new

Every failure prints one line naming the problem and exits non-zero (2 for bad input or a failed
run, 130 when interrupted; finished cells are kept and a rerun resumes).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import fnmatch
import re
import sys
from collections.abc import Sequence
from typing import Any

#: splits "a.x=1,b.y=2" into assignments, but not commas inside values such as [1,2]
_ASSIGNMENT_SPLIT = re.compile(r",(?=\s*[A-Za-z_][\w.:\-]*\.[A-Za-z_]\w*\s*=)")


class CLIError(Exception):
    """A user error the CLI reports in one line."""


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def parse_assignments(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["influence.solver=arnoldi", "dualview.C=1e-3,random.seed=1"]`` -> ``{explainer: {param: value}}``.

    Values are Python literals where they parse (``1e-3``, ``[1, 2]``, ``None``), else strings.
    """
    params: dict[str, dict[str, Any]] = {}
    for item in items:
        for part in _ASSIGNMENT_SPLIT.split(item):
            target, sep, raw = part.strip().partition("=")
            name, dot, key = target.strip().rpartition(".")
            if not sep or not dot or not name or not key:
                raise CLIError(f"--set expects EXPLAINER.PARAM=VALUE, got {part.strip()!r}")
            try:
                value: Any = ast.literal_eval(raw.strip())
            except (ValueError, SyntaxError):
                value = raw.strip()  # a bare string such as arnoldi
            params.setdefault(name, {})[key.strip()] = value
    return params


def explainer_names(spec: str) -> list[str]:
    """The names in ``--explainers``: comma-separated registry names or ``package.module:Class``
    specs, where ``all`` stands for every built-in explainer."""
    from dattr_eval.evaluation.grid import builtin_explainers

    names: list[str] = []
    for part in _split(spec):
        for name in builtin_explainers() if part == "all" else [part]:
            names.extend([name] if name not in names else [])
    return names


def build_explainers(names: Sequence[str], overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{name: explainer}`` with the ``--set`` overrides, validated before any work starts."""
    from dattr_eval import explainers as registry

    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise CLIError(
            f"--set names explainer(s) {unknown} that are not in --explainers {list(names)}"
        )
    built = {}
    for name in names:
        try:
            cls = registry.get(name)
        except KeyError as exc:
            raise CLIError(f"--explainers: {exc.args[0]}") from None
        if not (isinstance(cls, type) and issubclass(cls, registry.Explainer)):
            raise CLIError(
                f"--explainers {name}: {cls.__module__}.{cls.__qualname__} is not a subclass of "
                "dattr_eval.explainers.Explainer"
            )
        params = overrides.get(name, {})
        defaults = registry.REGISTRY.hyperparameters(name)
        signature = list(defaults)
        for key in params:
            if key not in signature:
                close = difflib.get_close_matches(key, signature, n=2, cutoff=0.5)
                close += [p for p in signature if p.lower() == key.lower() and p not in close]
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                raise CLIError(
                    f"--set {name}.{key}: {name} has no hyperparameter {key!r}{hint} "
                    f"(known: {', '.join(signature)})"
                )
            expected = _expected_type(defaults[key])
            if expected is not None and not isinstance(params[key], expected[0]):
                raise CLIError(
                    f"--set {name}.{key}={params[key]!r}: expected {expected[1]} "
                    f"(the default is {defaults[key]!r})"
                )
        try:
            built[name] = registry.create(name, **params)
        except (TypeError, ValueError) as exc:
            raise CLIError(f"--set {name}: {exc}") from None
    return built


def _expected_type(default: Any) -> tuple[tuple[type, ...], str] | None:
    """The value types a ``--set`` may give a hyperparameter with this default (``None``: any)."""
    if isinstance(default, bool):
        return (bool,), "True or False"
    if isinstance(default, int):
        return (int,), "an integer"
    if isinstance(default, float):
        return (int, float), "a number"
    return None


def _benchmark_names(patterns: Sequence[str]) -> list[str]:
    """Registry names matching each pattern (shell-style wildcards), in order, without repeats."""
    from dattr_eval import benchmarks

    names: list[str] = []
    for pattern in patterns:
        wildcard = any(c in pattern for c in "*?[")
        matched = fnmatch.filter(benchmarks.names(), pattern) if wildcard else [pattern]
        if not matched:
            raise CLIError(
                f"--benchmark {pattern!r} matches no benchmark; see `dattr-eval list benchmarks`"
            )
        for name in matched:
            try:
                benchmarks.REGISTRY.get(name)  # a registry name or a module:Class spec
            except KeyError as exc:
                raise CLIError(f"--benchmark: {exc.args[0]}") from None
            names.extend([name] if name not in names else [])
    return names


def cmd_list(args: argparse.Namespace) -> int:
    from dattr_eval import benchmarks, explainers, metrics
    from dattr_eval.registry import REQUIRED

    registries = {
        "explainers": explainers.REGISTRY,
        "metrics": metrics.REGISTRY,
        "benchmarks": benchmarks.REGISTRY,
    }
    for kind in [args.kind] if args.kind else list(registries):
        registry = registries[kind]
        print(f"{kind}:")
        for name, info in registry.describe().items():
            cls = registry.get(name)
            plugin = f"  [plugin: {cls.__module__}]" if info["plugin"] else ""
            print(f"  {name}  {info['summary']}{plugin}")
            params = ", ".join(
                k if v is REQUIRED else f"{k}={v!r}" for k, v in info["hyperparameters"].items()
            )
            print(f"      ({params})")
            family = getattr(cls, "family", None)
            if family is not None and family.needs_data_dir:
                where = (
                    "Debian's default directory or --data-dir"
                    if family.default_dir
                    else "--data-dir"
                )
                print(f"      data: {family.title.split(' (')[0]} files from {where}")
    return 0


def localisation_hooks(args: argparse.Namespace) -> list[Any]:
    """``[LocalisationHook]`` when ``--localisation`` is given, else ``[]``."""
    if not args.localisation:
        return []
    from dattr_eval.evaluation.xda_localisation import LocalisationHook, LocalisationSettings

    return [LocalisationHook(LocalisationSettings(n_test=args.localisation_n_test))]


def cmd_run(args: argparse.Namespace) -> int:
    from dattr_eval.evaluation import Evaluator
    from dattr_eval.evaluation.report import leaderboard, report, to_markdown

    explainers = build_explainers(
        explainer_names(args.explainers), parse_assignments(args.set or [])
    )
    if args.address is not None and args.backend != "ray":
        raise CLIError("--address needs --backend ray")
    executor: Any = args.backend
    if args.backend == "ray":
        from dattr_eval.evaluation.ray_executor import RayExecutor

        executor = RayExecutor(address=args.address, num_cpus=args.num_cpus, num_gpus=args.num_gpus)
    hooks = localisation_hooks(args)
    if args.xda:
        from dattr_eval.evaluation.xda_scores import XDAHook, XDASettings

        hooks.append(XDAHook(XDASettings(n_test=args.xda_n_test)))
    evaluator = Evaluator(
        _benchmark_names(args.benchmark),
        explainers,
        metrics=_split(args.metrics) if args.metrics else None,
        out_dir=args.out,
        device=args.device,
        batch_size=args.batch_size,
        executor=executor,
        hooks=hooks,
        replicates=args.replicates,
        cache_dir=args.cache_dir,
        data_dir=args.data_dir,
        force=args.force,
        memory_limit=None if args.memory_limit.lower() == "none" else args.memory_limit,
        progress=not args.no_progress,
        baseline=args.baseline,
    )
    try:
        results = evaluator.run()
    except KeyboardInterrupt:
        print(
            f"dattr-eval run: interrupted; {evaluator.computed} cell(s) saved in {args.out}, "
            "rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    print(to_markdown(leaderboard(results)))
    print(
        f"\n{evaluator.computed} cell(s) computed, {evaluator.reused} reused from {evaluator.store.path}"
        + (
            f", {evaluator.claimed_elsewhere} computed by another run"
            if evaluator.claimed_elsewhere
            else ""
        )
        + (
            f", {evaluator.from_baseline} copied from the baseline {args.baseline}"
            if args.baseline is not None
            else ""
        )
    )
    if not args.no_report:
        report(args.out)
        print(f"report: {args.out}/leaderboard.html")
    return 0


def cmd_meta(args: argparse.Namespace) -> int:
    from dattr_eval.evaluation.meta_table import cost_multiples, meta_summary
    from dattr_eval.evaluation.report import report, to_markdown
    from dattr_eval.meta.perturbations import PERTURBATIONS
    from dattr_eval.meta.runner import meta_evaluate

    explainers = build_explainers(_split(args.explainers), parse_assignments(args.set or []))
    perturbations = _split(args.perturbations) if args.perturbations else None
    for name in perturbations or ():
        if name not in PERTURBATIONS:
            raise CLIError(
                f"--perturbations: unknown perturbation {name!r} (known: {', '.join(PERTURBATIONS)})"
            )
    table = meta_evaluate(
        _benchmark_names(args.benchmark),
        explainers,
        metrics=_split(args.metrics) if args.metrics else None,
        out_dir=args.out,
        n_draws=args.draws,
        perturbations=perturbations,
        weight_noise=args.weight_noise,
        tolerance=args.tolerance,
        device=args.device,
        batch_size=args.batch_size,
        hooks=localisation_hooks(args),
        cache_dir=args.cache_dir,
        data_dir=args.data_dir,
        progress=not args.no_progress,
    )
    summary = meta_summary(table)
    print(to_markdown(summary) if not summary.empty else "no metric could be meta-evaluated")
    cost = ", ".join(f"{b} × {m:.1f}" for b, m in cost_multiples(table).items())
    print(f"\nwritten: {args.out}/meta.csv; cost relative to an unperturbed run: {cost}")
    if not args.no_report:
        report(args.out)
        print(f"report: {args.out}/leaderboard.html")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from dattr_eval.evaluation.report import report, to_markdown

    board = report(args.out_dir, figures=not args.no_figures)
    print(to_markdown(board))
    figures = "" if args.no_figures else " and figures (PNG)"
    print(f"\nwritten: {args.out_dir}/leaderboard.html, leaderboard.md, leaderboard.csv{figures}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from dattr_eval.evaluation.compare import NO_DRAWS, compare, compare_dirs, format_comparison

    if len(args.dirs) == 2 and args.between is None:
        table = compare_dirs(args.dirs[0], args.dirs[1])
        names = ("A", "B")
        print(f"A = {args.dirs[0]}, B = {args.dirs[1]}")
    elif len(args.dirs) == 1 and args.between is not None:
        table = compare(args.dirs[0], *args.between)
        names = tuple(args.between)
    else:
        raise CLIError("compare takes DIR_A DIR_B, or DIR --between EXPLAINER_A EXPLAINER_B")
    print(format_comparison(table, names))
    with_draws = table[table["units"] != NO_DRAWS]
    better = with_draws["better"].value_counts()
    summary = ", ".join(f"{n} better on {better.get(n, 0)}" for n in names)
    print(
        f"\n{len(table)} score(s) in both: {summary}, no significant difference on "
        f"{better.get('', 0)}, no stored draws (difference only) on {len(table) - len(with_draws)}"
        " (95 % bootstrap intervals; units: paired where both share the benchmark fingerprint "
        "and metric key)"
    )
    return 0


def add_grid_arguments(
    parser: argparse.ArgumentParser, explainers_help: str, out_help: str
) -> None:
    """The arguments every grid command (``run``, ``meta``) takes: what to run, where, how."""
    parser.add_argument(
        "--benchmark",
        action="append",
        required=True,
        help="benchmark name or wildcard pattern ('digits-*'); repeat for several",
    )
    parser.add_argument("--explainers", required=True, help=explainers_help)
    parser.add_argument(
        "--set",
        action="append",
        metavar="EXPLAINER.PARAM=VALUE[,...]",
        help="explainer hyperparameter, e.g. influence.solver=arnoldi; repeat or comma-separate for several",
    )
    parser.add_argument(
        "--metrics", help="comma-separated metric names (default: each benchmark's own)"
    )
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--device", default=None, help="cpu (default) or cuda")
    parser.add_argument(
        "--batch-size", type=int, default=64, help="test samples per explained batch"
    )
    parser.add_argument(
        "--data-dir", default=None, help="dataset files for benchmarks that are not bundled"
    )
    parser.add_argument(
        "--cache-dir", default=None, help="trained-model cache (default ~/.cache/dattr_eval)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--no-report", action="store_true", help="do not write the report at the end"
    )
    parser.add_argument(
        "--localisation",
        action="store_true",
        help="also score XDA heatmaps on the shortcut mark (shortcut benchmarks)",
    )
    parser.add_argument(
        "--localisation-n-test", type=int, default=16, help="shortcut-misled test points explained"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dattr-eval", description="Score training-data attribution methods."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_list = sub.add_parser(
        "list", help="list explainers, metrics and benchmarks with their hyperparameters"
    )
    p_list.add_argument("kind", nargs="?", choices=["explainers", "metrics", "benchmarks"])
    p_list.set_defaults(func=cmd_list)

    p_run = sub.add_parser("run", help="evaluate explainers on benchmarks; results go to --out")
    add_grid_arguments(
        p_run,
        explainers_help="comma-separated explainer names or 'package.module:Class' specs; 'all' = "
        "the built-in ones (peer adapters and plugins by name)",
        out_help="output directory (a rerun resumes there)",
    )
    p_run.add_argument(
        "--replicates", type=int, default=1, help="rebuild each benchmark with this many seeds"
    )
    p_run.add_argument("--force", action="store_true", help="recompute cells already in --out")
    p_run.add_argument(
        "--memory-limit",
        default="auto",
        help="bytes a cell may take, e.g. 6G or 500M (default: half the machine's RAM; 'none' for "
        "no limit); a cell estimated above it becomes an error row instead of running",
    )
    p_run.add_argument(
        "--baseline",
        default=None,
        metavar="DIR",
        help="a stored board (results directory or bundle): copy its cells instead of computing "
        "them, after checking they were computed under the same conditions",
    )
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
        help="Ray cluster to join: 'auto' (this machine's cluster), 'ray://HEAD:10001'; default: start a local one",
    )
    p_run.add_argument("--num-cpus", type=float, default=1, help="CPUs each Ray task reserves")
    p_run.add_argument(
        "--num-gpus", type=float, default=0, help="GPUs each Ray task reserves (with --device cuda)"
    )
    p_run.set_defaults(func=cmd_run)

    p_meta = sub.add_parser(
        "meta",
        help="meta-evaluate the metrics: noise resilience and adversarial reactivity (meta.csv in --out)",
    )
    add_grid_arguments(
        p_meta,
        explainers_help="comma-separated explainer names (at least two methods; random is a reference)",
        out_help="output directory (results.csv, meta.csv)",
    )
    p_meta.add_argument("--draws", type=int, default=3, help="draws per perturbation")
    p_meta.add_argument(
        "--perturbations",
        help="comma-separated: weight_noise (minor); shuffled_columns, randomized_model, "
        "equal_norm_noise (disruptive); default all",
    )
    p_meta.add_argument(
        "--weight-noise", type=float, default=1e-3, help="sigma of the multiplicative weight noise"
    )
    p_meta.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="unit changes within this many standard deviations count as none (0: MetaQuantus' exact tests)",
    )
    p_meta.set_defaults(func=cmd_meta)

    p_report = sub.add_parser(
        "report", help="write the leaderboard (Markdown, HTML, figures) of a results directory"
    )
    p_report.add_argument("out_dir")
    p_report.add_argument("--no-figures", action="store_true")
    p_report.set_defaults(func=cmd_report)

    p_compare = sub.add_parser(
        "compare",
        help="differences of stored scores with bootstrap intervals: DIR_A DIR_B, or two "
        "explainers of one DIR (--between A B)",
    )
    p_compare.add_argument("dirs", nargs="+", metavar="DIR")
    p_compare.add_argument(
        "--between", nargs=2, metavar=("A", "B"), help="compare explainer A with explainer B"
    )
    p_compare.set_defaults(func=cmd_compare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dattr-eval`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"dattr-eval {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 (one line for the user; tracebacks only for bugs below)
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        kind = "" if isinstance(exc, CLIError) else f"{type(exc).__name__}: "
        print(f"dattr-eval {args.command}: error: {kind}{message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
