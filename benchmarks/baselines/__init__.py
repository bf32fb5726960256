"""The baselines the benchmarks measure ours against: one module per baseline.

Each re-implements, faithfully and minimally, the legacy (or previous) way a
tier did its work, so that a benchmark can run it beside ours in the same
process, on the same data:

- `legacy_read_blocks`: the original deployment's hand-written Modbus blocks;
- `legacy_energy`: the legacy logger's energy rule (power × the nominal interval);
- `naive_poll_loop`: the legacy logger's loop, "poll every meter, then sleep";
- `legacy_meter_readings`: the legacy logger's table, a connection and commit per row;
- `legacy_bridge`: the legacy bridge's arrival-order batches, one document each;
- `previous_intake`: the previous release's `parse_reading`, loaded from git;
- `naive_api`: the legacy API's way, every window in range streamed and summed;
- `legacy_firestore_reads`: the legacy API's Firestore reads per request (a cost model);
- `previous_series`: the previous way of stepping windows into `/api/series` points;
- `sql_scan`: the dashboard's figures by a scan of every row in SQL;
- `pandas_dashboard`: the legacy dashboard's way, raw rows into pandas, then summed.
"""
