"""Scheduler backends, one module each, by the name a BatchCluster's spec.scheduler uses."""

from .base import Scheduler
from .htcondor import HTCondor
from .lsf import LSF
from .moab import Moab
from .pbspro import PBSPro
from .sge import GridEngine
from .slurm import Slurm
from .torque import Torque

BACKENDS: dict[str, type[Scheduler]] = {
    backend.name: backend for backend in (Slurm, LSF, HTCondor, GridEngine, PBSPro, Torque, Moab)
}

__all__ = ["BACKENDS", "Scheduler"]
