"""`campus-energy import-legacy`: a database of the original deployment into the logger's store.

- `command`: the command; `database`: reading the original file;
- `convert`: its rows turned into our readings (pure: local stamps, power units, signs).
"""
