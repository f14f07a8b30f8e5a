"""A seeded chaos campaign on the process stack (issue 15): faults drawn from a seed
(schedule.py) injected into the real API server, etcd, operator, slurmctld and login node
(faults.py) while users start and stop servers (workload.py), with invariants checked all along
(invariants.py) and a table per fault kind (results.py). `python -m chaos run --seed N`."""

import sys
from pathlib import Path

# Like bench/: the campaign runs from the tree and shares the tests' stack helpers, which start
# daemons with the local stack's orchestrator (dev/devstack, not installed).
_DEV = str(Path(__file__).resolve().parents[1] / "dev")
if _DEV not in sys.path:
    sys.path.append(_DEV)
