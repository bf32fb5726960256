"""`python -m campus_energy` runs the command-line interface."""

import sys

from campus_energy.cli import main

sys.exit(main())
