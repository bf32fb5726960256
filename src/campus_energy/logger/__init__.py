"""The logger tier (`campus-energy logger`): polls the meters, integrates power into energy,
keeps every reading in its SQLite store and publishes it over MQTT.

- `service`: the polling loop (`MeterLogger`); `store`: the SQLite store and its outbox;
- `publisher`: the outbox over MQTT, at least once; `homeassistant`: MQTT discovery;
- `metrics`: its Prometheus metrics; `command`: the command line.
"""
