"""The meters' side: everything that talks Modbus or pretends to be a meter.

- `modbus`: one bus (RTU on a serial port, or TCP) with its outages and back-off;
- `polling`: a meter's read plan over its bus;
- `profiles/`: the register maps of the supported meters (TOML), and the loader;
- `diagnose`: what `read` and `scan` do; `commands`: those commands and `simulate`;
- `simulator/`: virtual meters with a realistic campus load, served over Modbus.
"""
