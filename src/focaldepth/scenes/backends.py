"""Which rendering backends are installed. Kept apart from :mod:`.blender` so that the scene
config (:mod:`.config`) can check for Blender without importing the backend, which itself
reads generate configs (no import cycle scenes <-> generate.config)."""

from __future__ import annotations

import importlib.util


def blender_available() -> bool:
    """Whether ``bpy`` (Blender as a Python module) can be imported."""
    return importlib.util.find_spec("bpy") is not None
