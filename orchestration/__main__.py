"""`python -m hm2bp.orchestration COMMAND ...`: the `hm2bp` CLI, for `ray job submit` entry points
on nodes where the console script is not on PATH."""

import sys

from hm2bp.orchestration.cli import main

sys.exit(main())
