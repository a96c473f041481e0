"""``python -m moreclip`` (and ``torchrun -m moreclip``) run the command-line interface."""

import sys

from moreclip.cli import main

if __name__ == "__main__":
    sys.exit(main())
