"""The examples in the public docstrings run and print what they say (doctest).

Each public module's examples run here; a framework's adapter is skipped when the framework
is not installed, with the reason shown.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util

import pytest

MODULES = {
    # module: the framework it needs (None: only smoothce's own dependencies)
    "smoothce._api": None,
    "smoothce.metrics": None,
    "smoothce.torch._functional": "torch",
    "smoothce.torch._module": "torch",
    "smoothce.torch._linear": "torch",
    "smoothce.torch._function": "torch",
    "smoothce.torch._errors": "torch",
    "smoothce.jax._losses": "jax",
    "smoothce.jax._linear": "jax",
    "smoothce.tensorflow._nn": "tensorflow",
    "smoothce.keras._losses": "keras",
    "smoothce.keras._factory": "keras",
}


@pytest.mark.parametrize("name", list(MODULES))
def test_docstring_examples(name):
    framework = MODULES[name]
    if framework is not None and importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed")
    if framework == "keras" and importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401  (before tensorflow, which Keras imports)
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    tests = [t for t in finder.find(module, name) if t.examples]
    assert tests, f"{name} has no docstring examples"
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
