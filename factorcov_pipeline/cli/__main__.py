"""`python -m factorcov_pipeline.cli ...`: the `factorcov` command."""

import sys

from factorcov_pipeline.cli.app import main

sys.exit(main())
