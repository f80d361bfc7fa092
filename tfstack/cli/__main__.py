"""`python -m tfstack.cli VERB ...`: the same as the `tfstack` command."""

import sys

from tfstack.cli import main

sys.exit(main())
