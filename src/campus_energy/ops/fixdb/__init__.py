"""`campus-energy fix-db`: `command` repairs a logger's store through `offline_store`, a view
of the store opened while no logger writes it."""
