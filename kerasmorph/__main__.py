"""`python -m kerasmorph`: the `kerasmorph` command (as `python -m kerasmorph.cli`)."""

import sys

from kerasmorph.cli import main

sys.exit(main())
