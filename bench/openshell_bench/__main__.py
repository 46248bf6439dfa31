"""``python -m openshell_bench`` (with ``bench/`` on ``sys.path``) = ``bench/run.py``."""

import sys

from openshell_bench.cli import main

sys.exit(main())
