"""Scale and speed of BatchNotebook, measured side by side with batchspawner on real Slurm.

`make bench N="10 100 1000"` (or `python -m bench.run`) writes bench/results/results.md and PNGs.
"""
