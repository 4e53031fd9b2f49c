r"""The paper's claims as code: classic layers rebuilt as integral transforms.

Each ``from_*`` function takes a classic module and returns an ITNet module that
computes the same function and is called like the classic module.
"""

from itnet_geo.nn.special.points import *  # noqa: F403
from itnet_geo.nn.special.points import __all__ as _points_all
from itnet_geo.nn.special.sequences import *  # noqa: F403
from itnet_geo.nn.special.sequences import __all__ as _sequences_all

__all__ = list(_points_all) + list(_sequences_all)
