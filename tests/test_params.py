"""ParamsMixin: get_params, set_params (scikit-learn rules) and clone."""

import pytest
import torch

from dattr_eval import explainers
from dattr_eval.params import ParamsMixin, clone


class Inner(ParamsMixin):
    def __init__(self, a: int = 1, b: str = "x") -> None:
        self.a = a
        self.b = b


class Outer(ParamsMixin):
    def __init__(self, inner: Inner | None = None, sizes: tuple = (1, 2), C: float = 0.1) -> None:
        self.inner = inner
        self.sizes = sizes
        self.C = C


def test_set_params_sets_and_returns_self():
    est = Inner()
    assert est.set_params(a=3) is est and est.get_params() == {"a": 3, "b": "x"}
    assert est.set_params() is est


def test_set_params_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match=r"invalid parameter 'c' for Outer.*did you mean 'C'"):
        Outer().set_params(c=1.0)
    with pytest.raises(ValueError, match="valid parameters are: C, inner, sizes"):
        Outer().set_params(zzz=1)


def test_clone_is_unfitted_with_equal_params_and_independent_containers():
    xpl = explainers.create("random", seed=4)
    xpl.fitted_thing_ = 1
    twin = clone(xpl)
    assert type(twin) is type(xpl) and twin is not xpl
    assert twin.get_params() == xpl.get_params()
    assert not hasattr(twin, "fitted_thing_")
    outer = Outer(inner=Inner(a=5), sizes=[1, 2])
    copy = clone(outer)
    assert copy.inner is not outer.inner and copy.inner.get_params() == {"a": 5, "b": "x"}
    assert copy.sizes == [1, 2] and copy.sizes is not outer.sizes
    tensor = torch.zeros(3)
    assert clone(Outer(C=tensor)).C is tensor  # tensors and other objects are shared


def test_clone_refuses_non_estimators():
    with pytest.raises(TypeError, match="clone needs an object with get_params"):
        clone(3)
