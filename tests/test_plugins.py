"""Plugins: entry points loaded lazily into the registries, and ``module:Class`` specs.

The end-to-end tests install a tiny plugin distribution the way pip lays one out (the module next
to a ``.dist-info`` folder with ``entry_points.txt``) into a temporary directory, put it on
``PYTHONPATH`` of a fresh interpreter and score its explainer on its benchmark with its metric,
through the CLI and through the API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from dattr_eval.plugins import PluginError, load_class_spec
from dattr_eval.registry import REQUIRED, Registry

ROOT = Path(__file__).resolve().parents[1]

PLUGIN_MODULE = '''
"""tinyplug: an explainer, a metric and a benchmark registered through entry points only."""

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from dattr_eval.benchmarks import Benchmark, BenchmarkSpec
from dattr_eval.explainers import Explainer
from dattr_eval.metrics.identical_class import IdenticalClass


class PixelDot(Explainer):
    """Dot products of raw pixels."""

    summary = "pixel dot products (plugin)"

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def _fit(self, model, train_dataset):
        self.pixels_ = torch.stack([x for x, _ in train_dataset]).flatten(1)

    def _explain(self, inputs, targets):
        return self.scale * inputs.flatten(1) @ self.pixels_.T


class SpecOnly(PixelDot):
    """Never registered: reachable as 'tinyplug:SpecOnly' only."""


class PlugTop5(IdenticalClass):
    """identical_class with top_k=5 by default."""

    summary = "identical class, top-5 (plugin)"

    def __init__(self, top_k: int = 5) -> None:
        super().__init__(top_k=top_k)


class TinyDigits(BenchmarkSpec):
    """120 digits, an untrained MLP."""

    summary = "tiny digits (plugin)"
    metrics = ("identical_class", "plug_top5")

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def build(self, *, cache_dir=None, data_dir=None, device=None):
        x, y = load_digits(return_X_y=True)
        x = torch.tensor(x / 16, dtype=torch.float32)
        torch.manual_seed(self.seed)
        model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
        train = TensorDataset(x[:120], torch.tensor(y[:120]))
        test = TensorDataset(x[500:530], torch.tensor(y[500:530]))
        return Benchmark.from_datasets(
            self.label, model, train, test, metrics=self.metrics, n_test=30, seed=self.seed
        )
'''

ENTRY_POINTS = """
[dattr_eval.explainers]
pixel_dot = tinyplug:PixelDot

[dattr_eval.metrics]
plug_top5 = tinyplug:PlugTop5

[dattr_eval.benchmarks]
tiny-digits = tinyplug:TinyDigits
"""


def install_distribution(
    site: Path, name: str, entry_points: str, modules: dict[str, str] | None = None
) -> Path:
    """A distribution as pip installs it into ``site``: its modules and ``<name>-0.1.dist-info``."""
    site.mkdir(parents=True, exist_ok=True)
    for module, source in (modules or {}).items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    return site


def run_python(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def plugin_site(tmp_path):
    return install_distribution(
        tmp_path / "site", "tinyplug", ENTRY_POINTS, {"tinyplug": PLUGIN_MODULE}
    )


# ------------------------------------------------------------------ end to end
def test_cli_scores_plugin_explainer_metric_benchmark_and_a_class_spec(plugin_site, tmp_path):
    out = tmp_path / "out"
    done = run_python(
        plugin_site,
        "-m",
        "dattr_eval.cli",
        "run",
        "--benchmark",
        "tiny-digits",
        "--explainers",
        "pixel_dot,tinyplug:SpecOnly,random",
        "--set",
        "tinyplug:SpecOnly.scale=2.0",
        "--out",
        str(out),
        "--no-progress",
        "--no-report",
    )
    assert done.returncode == 0, done.stderr
    assert "3 cell(s) computed" in done.stdout
    rows = pd.read_csv(out / "results.csv")
    scored = rows[rows.kind == "metric"]
    assert set(scored.explainer) == {"pixel_dot", "tinyplug:SpecOnly", "random"}
    assert set(scored.metric) == {"identical_class", "plug_top5"}
    assert (scored.status == "ok").all()
    assert (
        '"scale": 2.0'
        in scored.loc[scored.explainer == "tinyplug:SpecOnly"].iloc[0].explainer_params
    )
    # SpecOnly is PixelDot scaled: the same rankings, hence the same scores
    by = scored.set_index(["explainer", "metric"]).score
    for metric in ("identical_class", "plug_top5"):
        assert by["pixel_dot", metric] == by["tinyplug:SpecOnly", metric]


def test_api_scores_plugins_lazily_and_list_shows_them(plugin_site, tmp_path):
    script = f"""
import json, sys
import dattr_eval
from dattr_eval import explainers
from dattr_eval.cli import main
assert "tinyplug" not in sys.modules  # nothing loaded at import
assert "pixel_dot" not in explainers.names(plugins=False)
assert "tinyplug" not in sys.modules
assert main(["list"]) == 0
df = dattr_eval.evaluate("tiny-digits", ["pixel_dot", "tinyplug:SpecOnly"], out_dir={str(tmp_path / "api")!r}, progress=False)
rows = df[df.kind == "metric"]
print(json.dumps({{
    "scores": {{f"{{e}}/{{m}}": s for e, m, s in zip(rows.explainer, rows.metric, rows.score)}},
    "status": sorted(set(rows.status)),
    "plugin": explainers.REGISTRY.is_plugin("pixel_dot"),
    "all": "pixel_dot" in __import__("dattr_eval.evaluation.grid", fromlist=["x"]).builtin_explainers(),
    "described": dattr_eval.describe_explainers()["pixel_dot"]["hyperparameters"],
}}))
"""
    done = run_python(plugin_site, "-c", script)
    assert done.returncode == 0, done.stderr
    for line in ("pixel_dot  pixel dot products (plugin)  [plugin: tinyplug]", "(scale=1.0)"):
        assert line in done.stdout
    assert "plug_top5  identical class, top-5 (plugin)" in done.stdout
    assert "tiny-digits  tiny digits (plugin)" in done.stdout
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(got["scores"]) == {
        f"{e}/{m}"
        for e in ("pixel_dot", "tinyplug:SpecOnly")
        for m in ("identical_class", "plug_top5")
    }
    assert got["status"] == ["ok"] and got["plugin"] is True and got["all"] is False
    assert got["described"] == {"scale": 1.0}


# ------------------------------------------------------------------ the registry
WIDGETS = """
class Gear:
    summary = "a gear"

    def __init__(self, teeth, size=2):
        self.teeth, self.size = teeth, size


class Broken:
    pass

not_a_class = 3
"""


@pytest.fixture
def widgets(tmp_path, monkeypatch):
    site = install_distribution(
        tmp_path / "site",
        "widgetpack",
        """
        [dattr_eval_test.widgets]
        gear = widgetpack_mod:Gear
        ghost = widgetpack_missing:Ghost
        number = widgetpack_mod:not_a_class
        alpha = widgetpack_mod:Gear
        """,
        {"widgetpack_mod": WIDGETS},
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "widgetpack_mod", raising=False)
    reg = Registry("widget", group="dattr_eval_test.widgets")

    @reg.register("alpha")
    class Alpha:
        summary = "built in"

    return reg, Alpha


def test_entry_points_load_on_first_lookup_of_their_name(widgets):
    reg, _ = widgets
    assert reg.names(plugins=False) == ["alpha"] and "widgetpack_mod" not in sys.modules
    gear = reg.create("gear", teeth=12)
    assert "widgetpack_mod" in sys.modules and gear.teeth == 12
    assert reg.is_plugin("gear") and not reg.is_plugin("alpha")
    assert reg.names(plugins=False) == ["alpha"]
    assert reg.hyperparameters("gear") == {"teeth": REQUIRED, "size": 2}


def test_listing_loads_every_entry_point_and_warns_about_bad_ones(widgets):
    reg, alpha = widgets
    with pytest.warns(UserWarning) as caught:
        names = reg.names()
    messages = "\n".join(str(w.message) for w in caught)
    assert names == ["alpha", "gear"]
    assert "'ghost'" in messages and "widgetpack" in messages and "ModuleNotFoundError" in messages
    assert "'number'" in messages and "not a class" in messages
    assert "'alpha'" in messages and "taken by" in messages
    assert reg.get("alpha") is alpha  # a plugin never replaces a built-in
    assert reg.describe()["gear"] == {
        "summary": "a gear",
        "citation": "",
        "hyperparameters": {"teeth": REQUIRED, "size": 2},
        "plugin": True,
    }
    with pytest.raises(KeyError, match="unknown widget 'gost'.*'ghost'|unknown widget 'gost'"):
        reg.get("gost")


def test_class_specs_resolve_without_registering(widgets):
    reg, _ = widgets
    cls = reg.get("widgetpack_mod:Gear")
    assert cls.__name__ == "Gear" and reg.create("widgetpack_mod:Gear", teeth=3).size == 2
    assert reg.names(plugins=False) == ["alpha"]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("widgetpack_mod:", "expected 'package.module:ClassName'"),
        ("no_such_module_xyz:Thing", "cannot import module 'no_such_module_xyz'.*installed"),
        ("widgetpack_mod:Gaer", "no attribute 'Gaer'; did you mean 'Gear'"),
        ("widgetpack_mod:not_a_class", "is a int, not a class"),
    ],
)
def test_bad_class_specs_say_what_is_wrong(widgets, spec, match):
    with pytest.raises(PluginError, match=match):
        load_class_spec(spec, "widget")
    reg, _ = widgets
    with pytest.raises(KeyError, match=match):  # PluginError is a KeyError: lookups fail alike
        reg.get(spec)
