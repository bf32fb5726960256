"""The bridge tier (`campus-energy bridge`): takes the loggers' readings from MQTT, keeps
them in its spool and merges them into window documents in the window store.

- `service`: intake and the write loop (`Bridge`); `spool`: its SQLite spool and dead letters;
- `metrics`: its Prometheus metrics; `command`: the command line.
"""
