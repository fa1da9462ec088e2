"""Writes tasks/settings_type.py, the typed Settings class, from tasks/config.py's VARIABLES:
`.venv/bin/python scripts/settings_type.py` after adding or changing a variable."""

from pathlib import Path

from tasks.config import settings_module

Path(__file__).resolve().parent.parent.joinpath("tasks", "settings_type.py").write_text(
    settings_module()
)
