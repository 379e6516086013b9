"""The one error type for bad input: the CLI prints its message and exits before any training starts."""


class InputError(ValueError):
    """Input that cannot train (missing config/column, unknown objective, empty split, wrong checkpoint...)."""
