"""A seeded chaos campaign on the process stack (issue 15): faults drawn from a seed
(schedule.py) injected into the real API server, etcd, operator, slurmctld and login node
(faults.py) while users start and stop servers (workload.py), with invariants checked all along
(invariants.py) and a table per fault kind (results.py). `python -m chaos run --seed N`."""
