"""Scheduler backends, one module each, by the name a BatchCluster's spec.scheduler uses."""

from .base import Scheduler
from .slurm import Slurm

BACKENDS: dict[str, type[Scheduler]] = {backend.name: backend for backend in (Slurm,)}

__all__ = ["BACKENDS", "Scheduler"]
