"""``python -m pnp_stable``: the ``pnp-stable`` command line, for environments where the
package is importable but its console script is not installed (a copied checkout, say)."""

import sys

from .cli import main

sys.exit(main())
