"""``python -m dpcore``: see dpcore.cli."""

import sys

from dpcore.cli import main

sys.exit(main())
