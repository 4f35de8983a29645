"""Models: backbone factory (timm + headstart's small convnets), weights, heads."""

from headstart.models.network import Network, build_network

__all__ = ["Network", "build_network"]
