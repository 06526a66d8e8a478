"""The application: the ``smoothce`` command line, the calibration demo and the benchmark.

Nothing in the library (the modules directly in ``smoothce``) imports this package; it uses
the library's public API and the framework adapters like any other program.
"""

from ._main import main as main

__all__ = ["main"]
