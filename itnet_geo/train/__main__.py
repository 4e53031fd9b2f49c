r"""``python -m itnet_geo.train ...`` = ``itnet-geo train ...`` (the torchrun entry).

.. code-block:: text

    torchrun --nproc_per_node=2 -m itnet_geo.train --dataset synthetic --out runs/ddp
"""

import sys

from itnet_geo.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
