"""``python -m engine.cli ARGS``: the same as ``tessera ARGS``."""

import sys

from engine.cli.main import main

sys.exit(main())
