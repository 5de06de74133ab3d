"""The one exception type for mistakes in what a user gave us (configs, datasets, files, arguments)."""


class UserError(Exception):
    """A problem with the user's input. The CLI prints its message on one line and exits non-zero, no traceback."""
