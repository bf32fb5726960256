"""The attack suite: what a stranger can send, connect or corrupt, and what must hold.

Each module takes one edge (MQTT payloads, the HTTP front, files on disk, the
broker's access rules) and asserts that the books stay exact and every service
keeps answering. Runs in `make test` (short) and `make faults` (long).
"""
