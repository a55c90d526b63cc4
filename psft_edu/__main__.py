"""``python -m psft_edu``: the command line, which lives in :mod:`psft_edu.cli.main`."""

import sys

from psft_edu.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
