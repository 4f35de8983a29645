"""headstart: a folder of labelled images -> a fine-tuned, evaluated, exported classifier."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Classifier", "load", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `import headstart` stays cheap and the prediction path
    # never pulls in the training stack.
    if name in ("Classifier", "load"):
        from headstart.process import thread_policy

        thread_policy()  # before the api brings in torch and its OpenMP (see headstart.process)
        from headstart import api

        return getattr(api, name)
    raise AttributeError(f"module 'headstart' has no attribute {name!r}")
