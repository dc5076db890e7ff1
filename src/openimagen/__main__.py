"""``python -m openimagen``: the same as the ``openimagen`` command."""

import sys

from openimagen.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
