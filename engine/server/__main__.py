"""``python -m engine.server [--port 8000 ...]``: the same as ``tessera serve``."""

import sys

from engine.server.main import main

sys.exit(main())
