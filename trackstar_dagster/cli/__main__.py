"""``python -m trackstar_dagster.cli``: the ``trackstar-dagster`` command."""

import sys

from trackstar_dagster.cli import main

sys.exit(main())
