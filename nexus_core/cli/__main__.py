"""`python -m nexus_core.cli`: the same as the `nexus-gen` command."""
import sys

from .entry import main

sys.exit(main())
