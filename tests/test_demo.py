"""The digits demo writes its report (tiny recipe; the real one trains the default CNN)."""

from dattr_eval import demo
from dattr_eval.models import TrainRecipe


def test_demo_writes_report(tmp_path):
    recipe = TrainRecipe(arch="digits_mlp", epochs=1)
    text = demo.run(tmp_path / "out", n_test=2, cache_dir=tmp_path / "cache", recipe=recipe)
    assert (tmp_path / "out" / "demo.md").read_text() == text
    assert "| random | 1 |" in text and "digits_mlp" in text
    assert any((tmp_path / "cache" / "models").glob("*/manifest.json"))
