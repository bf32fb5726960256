"""What every service shares at run time, and nothing tier-specific.

- `clock`: the wall and monotonic clocks, the boot id, `sleep_or_stop`;
- `process`: running a command until SIGINT or SIGTERM;
- `notify`: systemd's notification socket and watchdog;
- `outages`: an outage logged once when it starts and once when it ends;
- `exporter`: the Prometheus `/metrics` endpoint;
- `signing`: the payload signing key file;
- `mqtt`: MQTT connection settings and TLS;
- `sqlite`: opening SQLite files (checked at open, read-only on a read-only mount).
"""
