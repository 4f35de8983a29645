"""Models: backbone factory (timm + headstart's small convnets), weights, heads."""

from headstart.models import timm_entry  # noqa: F401  (registers convnet_* with timm)
from headstart.models.network import Network, build_network

__all__ = ["Network", "build_network"]
