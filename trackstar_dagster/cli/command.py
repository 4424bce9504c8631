"""What a subcommand raises for the operator to read: ``trackstar-dagster: <message>``, exit code 2."""


class CommandError(Exception):
    """A message for the operator, exit code 2."""
