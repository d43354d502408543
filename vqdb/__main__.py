"""``python -m vqdb``: the ``vqdb`` command line."""

import sys

from .cli import main

sys.exit(main())
