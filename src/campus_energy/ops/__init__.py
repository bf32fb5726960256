"""Operations commands: repairing, migrating, reconciling, diagnosing, installing.

Each command is a module offering the protocol of every `campus-energy` command
(see `campus_energy.cli`): `configure(parser)` (its options), `run(args) -> int`
(its exit code; the project's exceptions are turned into messages and exit codes
by `campus_energy.cli.main`) and a docstring (its `--help` description).
"""
