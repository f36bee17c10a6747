"""``python -m salt``: the ``salt`` command (e.g. for ``torchrun``/``srun`` launches)."""

import sys

from salt.cli.main import main

sys.exit(main())
