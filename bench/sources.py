"""Where Debian installs the public data the benchmarks read: the only absolute paths in bench/.

Each is a default that an environment variable overrides, for a machine that keeps them
elsewhere:

    apt-get install openclipart-png dataset-fashion-mnist
    HEADSTART_OPENCLIPART=/data/openclipart/png HEADSTART_FASHION_MNIST=/data/fmnist python bench/suite_data.py ...

scikit-learn's digits come with scikit-learn itself (``pip install headstart[test]``).
"""

from __future__ import annotations

import os
from pathlib import Path

OPENCLIPART = Path(os.environ.get("HEADSTART_OPENCLIPART", "/usr/share/openclipart/png"))
FASHION_MNIST = Path(os.environ.get("HEADSTART_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
