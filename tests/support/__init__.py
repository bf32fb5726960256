"""State shared by the test helpers, in one module everyone imports by the same name."""

from __future__ import annotations

# Processes deliberately kept for a whole module (a slow fixture shared by its tests).
SHARED_PROCESSES: set[int] = set()

# Headless Chromium on a machine with no network beyond loopback: nothing it starts may
# reach out (background networking, component updates, sync), and no sandbox as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
