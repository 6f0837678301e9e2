"""The experiment scripts, runnable as files (``python experiments/replicate.py``) or as modules
(``python -m experiments.replicate``), and the report writer (``python -m experiments.report``)."""

import os
import sys

# The scripts import each other by plain name (``from common import ...``), which running one as a file allows;
# this makes the same imports work when one runs as a module of this package.
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
