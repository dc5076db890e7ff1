"""``python -m openimagen.cli``: the same as ``openimagen``."""

import sys

from openimagen.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
