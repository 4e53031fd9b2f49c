"""itnet_geo: the ITNet learnable integral transform for point clouds and meshes."""

__version__ = "0.1.0"

__all__ = ["__version__"]
