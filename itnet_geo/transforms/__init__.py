r"""PyG transforms for shapes: surface sampling, normalisation, augmentation, meshes.

All are :class:`torch_geometric.transforms.BaseTransform` subclasses: they copy
the :class:`~torch_geometric.data.Data` shallowly, change only the attributes
they document, and work on a batch (``batch`` vector) as well, each graph on its
own.
"""

from itnet_geo.transforms.mesh_to_graph import (
    MeshToGraph,
    cotangent_laplacian,
    heat_kernel_signature,
)
from itnet_geo.transforms.normalize_unit_sphere import NormalizeUnitSphere
from itnet_geo.transforms.point_cutmix import PointCutMix
from itnet_geo.transforms.random_anisotropic_scale import RandomAnisotropicScale
from itnet_geo.transforms.random_jitter import RandomJitter
from itnet_geo.transforms.random_point_dropout import RandomPointDropout
from itnet_geo.transforms.random_rotate import RandomRotate
from itnet_geo.transforms.random_shift import RandomShift
from itnet_geo.transforms.sample_points import SamplePoints, sample_surface
from itnet_geo.transforms.subsample_points import SubsamplePoints

__all__ = [
    "SamplePoints",
    "SubsamplePoints",
    "NormalizeUnitSphere",
    "RandomRotate",
    "RandomAnisotropicScale",
    "RandomShift",
    "RandomJitter",
    "RandomPointDropout",
    "PointCutMix",
    "MeshToGraph",
    "sample_surface",
    "cotangent_laplacian",
    "heat_kernel_signature",
]
