"""Scale and speed of BatchNotebook, measured side by side with batchspawner on real Slurm.

`make bench N="10 100 1000"` (or `python -m bench.run`) writes bench/results/results.md and PNGs.
"""

import sys
from pathlib import Path

# The benchmark runs from the tree and shares the tests' stack helpers, which start daemons with
# the local stack's orchestrator (dev/devstack, not installed): the same path pytest is given.
_DEV = str(Path(__file__).resolve().parents[1] / "dev")
if _DEV not in sys.path:
    sys.path.append(_DEV)
