"""kopf handlers; importing this package registers them."""

from . import clusters, notebooks, reports, setup

__all__ = ["clusters", "notebooks", "reports", "setup"]
