"""The book of alerts and the channels that tell people, shared by the alerts service, the
API, the local dashboard, `campus-energy alerts list|ack|silence` and the reports.

`store.AlertBook` is the SQLite file (`alerts.state_path`) holding each alert's state, the
history of its transitions, the outbox of notifications (one row per transition and
channel, delivered at least once, retried with back-off), acknowledgements and silences.
`channels` delivers a `Notice` by e-mail (SMTP), webhook (signed JSON POST) or MQTT.
"""
