"""Where the stack's binaries and builds are cached (outside the tree, kept between runs)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("BATCHNOTEBOOK_CACHE", Path.home() / ".cache" / "batchnotebook"))
BIN = CACHE / "bin"
CNI_BIN = CACHE / "cni" / "bin"
