"""Operations commands: repairing, migrating, reconciling, diagnosing, installing.

Each module is one `campus-energy` command and offers the same three names:
`HELP` (one line for `--help`), `configure(parser)` (its options) and
`run(args) -> int` (its exit code; the project's exceptions are turned into
messages and exit codes by `campus_energy.cli.main`).
"""
