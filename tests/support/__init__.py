"""What the tests share: helpers grouped by what they are, and the state every helper sees.

- `waiting`: polling until a condition holds (sync and async)
- `net`: free ports and a TCP relay that can be cut
- `processes`: external programs (found or skipped), the CLI, services run until stopped
- `emulator`: the Firestore emulator, usable outside pytest (the benchmarks start it too)
- `stores`: window stores for a test (a throw-away PostgreSQL schema, the emulator)
- `config`: one builder of validated configurations
- `serial`: a virtual RS-485 cable (socat)
- `mqtt`: a persistent QoS 1 subscriber
"""

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
