"""kopf handlers; importing this package registers them."""

from . import clusters, memory, notebooks, reports, setup

__all__ = ["clusters", "memory", "notebooks", "reports", "setup"]
