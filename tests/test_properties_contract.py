"""Property tests of the contract and validation helpers (targets in ``tests/fuzz/contract.py``).

Generated valid inputs give outputs equal to an independent oracle (Python sorting for top-k);
generated invalid inputs raise the documented ValueError / TypeError / AttributionContractError
with a message naming the argument, never IndexError, RuntimeError or a silent result.
"""

from tests.fuzz import property_tests
from tests.fuzz.contract import CONTRACT, VALIDATION

test_valid_inputs_give_correct_outputs, test_invalid_inputs_give_clear_errors = property_tests(
    CONTRACT + VALIDATION
)
