"""JupyterHub spawner that runs each server as a BatchNotebook on an HPC batch cluster."""

from .home import TEMPLATES
from .spawner import BatchNotebookSpawner

__all__ = ["TEMPLATES", "BatchNotebookSpawner"]
