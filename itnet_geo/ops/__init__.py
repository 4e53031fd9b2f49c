"""Neighbour search, sampling and scatter reductions on irregular domains."""

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
]
