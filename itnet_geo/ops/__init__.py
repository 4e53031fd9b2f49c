"""Neighbour search, sampling and scatter reductions on irregular domains."""

from itnet_geo.ops.fused import compile_enabled, set_compile
from itnet_geo.ops.neighbors import fps, knn, knn_graph, radius, radius_graph
from itnet_geo.ops.scatter import scatter, scatter_softmax, segment

__all__ = [
    "knn",
    "knn_graph",
    "radius",
    "radius_graph",
    "fps",
    "scatter",
    "segment",
    "scatter_softmax",
    "set_compile",
    "compile_enabled",
]
