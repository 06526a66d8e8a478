"""The cross-framework test matrix: one ``xp`` fixture over every array library.

torch is imported before TensorFlow on purpose: the reverse order can segfault in one process.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax
import torch  # noqa: F401  (must precede tensorflow)

jax.config.update("jax_enable_x64", True)  # float64 tests need it; float32 stays float32

import array_api_strict  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests import backends  # noqa: E402

array_api_strict.set_array_api_strict_flags(api_version="2024.12")

BACKENDS = list(backends.BACKENDS)


@pytest.fixture(params=BACKENDS)
def xp(request: pytest.FixtureRequest) -> backends.Backend:
    """One array library per parametrisation; see ``tests/backends.py``."""
    return backends.BACKENDS[request.param]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
