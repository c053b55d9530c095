"""Shared test settings: reproducible randomness everywhere in tests/.

- Hypothesis: profile ``nmx`` (the default) is derandomized (the same examples on every run and
  every machine, whether or not the runner exports ``CI``) and prints the reproduction blob of a
  failure; ``HYPOTHESIS_PROFILE=explore`` draws fresh random examples for local bug hunting.
- torch's and Python's global generators are seeded before every test, so an unseeded
  ``torch.randn`` draws the same values whichever tests ran before it (pytest-xdist included).
  NumPy draws use explicit ``numpy.random.default_rng(seed)`` generators (ruff's NPY002 rejects
  the legacy global functions).
"""

from __future__ import annotations

import os
import random

import pytest
import torch
from hypothesis import settings

settings.register_profile("nmx", derandomize=True, print_blob=True, database=None)
settings.register_profile("explore", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "nmx"))

TEST_SEED = 0


@pytest.fixture(autouse=True)
def _seeded_generators():
    torch.manual_seed(TEST_SEED)
    random.seed(TEST_SEED)
