"""Registries: register/create/names, aliases, close-match errors, duplicates, summaries."""

import pytest

import dattr_eval
from dattr_eval import explainers, metrics
from dattr_eval.registry import Registry


def make_registry():
    reg = Registry("widget")

    @reg.register("alpha", aliases=("a",))
    class Alpha:
        summary = "the first"

        def __init__(self, size=1):
            self.size = size

    return reg, Alpha


def test_create_with_kwargs_and_alias():
    reg, alpha = make_registry()
    obj = reg.create("alpha", size=3)
    assert isinstance(obj, alpha) and obj.size == 3
    assert isinstance(reg.create("a"), alpha)
    assert reg.names() == ["alpha"]
    assert reg.summaries() == {"alpha": "the first"}


def test_unknown_name_lists_close_matches():
    reg, _ = make_registry()
    with pytest.raises(KeyError, match="alpha"):
        reg.create("alpah")


def test_duplicate_name_raises():
    reg, _ = make_registry()
    with pytest.raises(ValueError, match="alpha"):
        reg.register("alpha")(type("Other", (), {}))
    with pytest.raises(ValueError, match="'a'"):
        reg.register("beta", aliases=("a",))(type("Beta", (), {}))


def test_package_registries():
    assert "random" in explainers.names()
    assert isinstance(explainers.create("random", seed=3), explainers.REGISTRY.get("random"))
    with pytest.raises(KeyError, match="randm|random"):
        explainers.create("randm")
    with pytest.raises(KeyError):
        metrics.create("no_such_metric")
    summaries = dattr_eval.available_explainers()
    assert summaries["random"] == "seeded uniform random scores (baseline)"
    assert set(dattr_eval.available_metrics()) == set(metrics.names())
