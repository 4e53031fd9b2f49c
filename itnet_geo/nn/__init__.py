"""Layers: the ITNet integral transform, its kernels, sampling and adapters."""

from itnet_geo.nn import models, special
from itnet_geo.nn.conv import ITConv
from itnet_geo.nn.dense import ImageIT, SequenceIT
from itnet_geo.nn.kernels import KernelMLP
from itnet_geo.nn.models import ITNetClassifier, MeshITNet
from itnet_geo.nn.sampling import MonteCarlo, density_weights

__all__ = [
    "ITConv",
    "ITNetClassifier",
    "MeshITNet",
    "models",
    "ImageIT",
    "KernelMLP",
    "MonteCarlo",
    "density_weights",
    "SequenceIT",
    "special",
]
