"""Make ``es_helpers`` (this folder's shared test helpers) importable.

pytest runs with ``--import-mode=importlib``, which does not put test folders on
``sys.path``; the electrostatics test modules import ``es_helpers`` by name.
"""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
