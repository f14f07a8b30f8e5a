"""What the hub's spawner and the operator agree on, and nothing else: the API group and resource
names, the names derived from a notebook, phases and conditions (status.py), the user-options
contract and its checks (options.py, accounts.py) and what a user reads (texts.py).

The spawner imports only this package, so the hub needs none of the operator's dependencies.
docs/glossary.md defines the words the code uses in a sense of its own.
"""

GROUP = "batchnotebook.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
NOTEBOOKS = "batchnotebooks"
CLUSTERS = "batchclusters"
#: The key of the job's report token in the notebook's own Secret.
REPORT_TOKEN_KEY = "BATCHNOTEBOOK_REPORT_TOKEN"
#: The operator's finalizer on a BatchNotebook: its job is cancelled before the object goes.
FINALIZER = f"{GROUP}/job"
#: The kind that owns a notebook's Secret.
NOTEBOOK_KIND = "BatchNotebook"


def own_secret_name(notebook_name: str) -> str:
    """The name of the Secret the spawner makes for the BatchNotebook `notebook_name`."""
    return f"{notebook_name}-env"
