"""Property tests of the Explainer entry points (targets in ``tests/fuzz/explainers.py``).

``fit`` on generated datasets (float16/32/64 inputs, label tensors, bad items, labels out of
range, bad hyperparameters), ``explain`` / ``explain_topk`` / ``predict`` on generated test
batches (any float dtype, targets as tensors, lists or numpy, empty batches) and ``set_params``:
valid inputs give contract-valid outputs consistent with each other; invalid inputs raise
ValueError / TypeError naming the argument.
"""

from tests.fuzz import property_tests
from tests.fuzz.explainers import EXPLAINERS

test_valid_inputs_give_correct_outputs, test_invalid_inputs_give_clear_errors = property_tests(
    EXPLAINERS
)
