"""`python -m engines.cli`: the `dfwatch` console script with this interpreter."""
import sys

from engines.cli import main

sys.exit(main())
