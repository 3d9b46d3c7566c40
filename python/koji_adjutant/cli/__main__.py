"""``python -m koji_adjutant.cli``: the same as the ``koji-adjutant`` console script."""

import sys

from koji_adjutant.cli import main

sys.exit(main())
