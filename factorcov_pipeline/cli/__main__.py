"""`python -m factorcov_pipeline.cli`: the `factorcov` command (the tests start it this way)."""

import sys

from factorcov_pipeline.cli.app import main

sys.exit(main())
