r"""``python -m itnet_geo ...`` = the ``itnet-geo`` command."""

import sys

from itnet_geo.cli import main

if __name__ == "__main__":
    sys.exit(main())
