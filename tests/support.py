"""State shared by the test helpers, in one module everyone imports by the same name."""

from __future__ import annotations

# Processes deliberately kept for a whole module (a slow fixture shared by its tests).
SHARED_PROCESSES: set[int] = set()
