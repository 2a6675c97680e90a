"""User-facing errors: each renders as one line saying what went wrong, where, and how to fix it."""

__all__ = ["BevccError", "InputError", "PassError", "PluginError", "UsageError"]


class BevccError(Exception):
    """An error the user can act on; the CLI prints it as one line, without a traceback."""

    exit_code = 1


class UsageError(BevccError):
    """Bad command line, pipeline text, pass option or config value."""

    exit_code = 2


class InputError(BevccError):
    """The model, file or calibration data given cannot be used as it is."""


class PassError(BevccError):
    """A pass failed, broke the IR, or broke its contract; the message names the pass and its place."""


class PluginError(BevccError):
    """A plugin could not be loaded or registered something inconsistent."""
