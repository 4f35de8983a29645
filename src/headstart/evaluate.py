"""Deprecated: ``headstart.evaluate`` is now ``headstart.metrics`` (kept until 0.3).

Every name still resolves, with a ``DeprecationWarning`` naming the new home:

    >>> from headstart.evaluate import Metrics     # doctest: +SKIP
    DeprecationWarning: headstart.evaluate is deprecated ...; use headstart.metrics.Metrics
"""

from __future__ import annotations

import warnings
from typing import Any

from headstart import metrics as _new


def __getattr__(name: str) -> Any:
    value = getattr(_new, name)  # AttributeError for a name that never existed, as before
    warnings.warn(
        f"headstart.evaluate is deprecated and will be removed in 0.3; use headstart.metrics.{name}", DeprecationWarning, stacklevel=2
    )
    return value


def __dir__() -> list[str]:
    return dir(_new)
