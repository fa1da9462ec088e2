"""Where the lab keeps its cache and its running state (both outside the repository)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR = Path(os.environ.get("MDD_LAB_CACHE", "/var/cache/mdd-lab"))
STATE_DIR = Path(os.environ.get("MDD_LAB_STATE", "/var/lib/mdd-lab"))
REPO_DIR = Path(__file__).resolve().parent.parent
