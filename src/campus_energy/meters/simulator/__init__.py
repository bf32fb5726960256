"""Virtual meters: deterministic campus loads served over Modbus by pymodbus's simulator."""
