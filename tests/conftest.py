"""The cross-framework test matrix: one ``xp`` fixture over every installed array library.

A library that is not installed is skipped, with the reason shown (``pytest -rs``): the suite
runs wherever smoothce installs, NumPy alone included. torch is imported before TensorFlow on
purpose: the reverse order can segfault in one process.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from tests import backends

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: F401  (must precede tensorflow)
if importlib.util.find_spec("jax") is not None:
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 tests need it; float32 stays float32
if importlib.util.find_spec("array_api_strict") is not None:
    import array_api_strict

    array_api_strict.set_array_api_strict_flags(api_version="2024.12")


@pytest.fixture(params=backends.NAMES)
def xp(request: pytest.FixtureRequest) -> backends.Backend:
    """One array library per parametrisation (skipped when not installed)."""
    return backends.get(request.param)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
