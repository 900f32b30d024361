"""Run ``python -m credbroker``, the same as the ``credbroker`` command."""

import sys

from credbroker.cli import main

sys.exit(main())
