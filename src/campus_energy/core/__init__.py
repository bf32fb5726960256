"""Pure logic: no I/O, no clock reads, no globals. Time and values come in as arguments."""
