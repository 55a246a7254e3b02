"""`python -m kerasmorph.cli`: the `kerasmorph` command."""

import sys

from kerasmorph.cli import main

sys.exit(main())
