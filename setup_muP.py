#!/usr/bin/env python
"""Write the muP base shapes of a salt config: ``python setup_muP.py -c configs/GN2_muP.yaml``.

The same as the installed ``setup_muP`` command (see ``salt/mup/cli.py``).
"""

import sys

from salt.mup.cli import setup_mup_main

if __name__ == "__main__":
    sys.exit(setup_mup_main())
