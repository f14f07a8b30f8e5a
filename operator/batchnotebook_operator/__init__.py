"""BatchNotebook operator: runs Jupyter servers as jobs on external HPC batch schedulers.

What it shares with the hub's spawner (names, phases, conditions, the user-options contract) is
in batchnotebook_api; docs/glossary.md defines the words the code uses in a sense of its own.
"""
