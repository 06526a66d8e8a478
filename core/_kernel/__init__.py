"""The loss and its derivatives, once, for every array library: class axis last, any namespace.

``rows`` runs one block of rows; the two target strategies, :class:`IndexTarget` (integer class
indices) and :class:`DenseTarget` (probabilities), supply what differs between them. See
``_rows.py`` for the math.
"""

from ._dense import DenseTarget as DenseTarget
from ._index import IndexTarget as IndexTarget
from ._rows import Problem as Problem
from ._rows import Rows as Rows
from ._rows import Want as Want
from ._rows import rows as rows
from ._rows import spread_eps as spread_eps

__all__ = [
    "DenseTarget",
    "IndexTarget",
    "Problem",
    "Rows",
    "Want",
    "rows",
    "spread_eps",
]
