"""Geometry file readers: one call, numpy arrays out, or a clear :class:`ReadError`.

numpy only: no torch, no torch_geometric; h5py is imported lazily by the h5 reader.
"""

from itnet_geo.io.errors import ReadError
from itnet_geo.io.h5 import read_h5
from itnet_geo.io.npy import read_npy
from itnet_geo.io.obj import read_obj
from itnet_geo.io.off import read_off
from itnet_geo.io.pcd import read_pcd
from itnet_geo.io.ply import read_ply
from itnet_geo.io.read import SUPPORTED_EXTENSIONS, read
from itnet_geo.io.record import Record
from itnet_geo.io.txt import read_txt

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "ReadError",
    "Record",
    "read",
    "read_h5",
    "read_npy",
    "read_obj",
    "read_off",
    "read_pcd",
    "read_ply",
    "read_txt",
]
