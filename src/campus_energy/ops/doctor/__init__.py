"""`campus-energy doctor`: `command` runs the `checks` and says how to fix what is wrong."""
