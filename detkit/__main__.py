"""``python -m detkit``: the same as the ``detkit`` console script."""

import sys

from detkit.commands import main

sys.exit(main())
