r"""Shape datasets as PyG :class:`~torch_geometric.data.InMemoryDataset` objects.

:class:`ModelNet` (four layouts), :class:`MeshFolder` (SHREC-style meshes) and
:class:`SyntheticShapes` (generated offline) share one base,
:class:`ShapeDataset`: class-folder scanning, error collection and a verified
processed-data cache outside the data root.
"""

from itnet_geo.datasets._base import ShapeDataset
from itnet_geo.datasets._cache import default_cache_dir
from itnet_geo.datasets.irregular import IrregularOperatorTask
from itnet_geo.datasets.mesh_folder import MeshFolder
from itnet_geo.datasets.modelnet import (
    LAYOUTS,
    MODELNET10_CLASSES,
    TEST_COUNTS,
    ModelNet,
    detect_layout,
)
from itnet_geo.datasets.synthetic import SHAPE_CLASSES, SyntheticShapes, make_shape

__all__ = [
    "ModelNet",
    "MeshFolder",
    "SyntheticShapes",
    "IrregularOperatorTask",
    "ShapeDataset",
    "LAYOUTS",
    "MODELNET10_CLASSES",
    "TEST_COUNTS",
    "SHAPE_CLASSES",
    "detect_layout",
    "default_cache_dir",
    "make_shape",
]
