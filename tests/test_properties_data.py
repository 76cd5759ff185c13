"""Property tests of the data layer (targets in ``tests/fuzz/data.py``).

IDX and CIFAR files written from generated arrays read back equal; generated corruptions (bad
magic, truncation, extra bytes, non-gzip ``.gz``, labels or pixels out of range, empty or
garbage pickles) raise ValueError naming the file. ``ArrayDataset``, ``flip_labels``,
``group_labels``, ``subset_inputs`` and ``dataset_labels`` likewise.
"""

from tests.fuzz import property_tests
from tests.fuzz.data import DATA

test_valid_inputs_give_correct_outputs, test_invalid_inputs_give_clear_errors = property_tests(DATA)
