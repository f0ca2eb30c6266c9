"""The errors about the data a user gave: each message is one line naming the file, row or option."""


class DataError(Exception):
    """Base of the errors about the data a user gave: each message is one line naming the file, row or option
    (callers print it as it is, without a traceback)."""


class MosiDataError(DataError, ValueError):
    """A source file does not hold what its format promises."""

    def __init__(self, file, problem: str, *, split: str | None = None, row: int | None = None, expected: str | None = None):
        where = [str(file)] + ([f"split '{split}'"] if split else []) + ([f"row {row}"] if row is not None else [])
        message = ", ".join(where) + f": {problem}" + (f" (expected {expected})" if expected else "")
        super().__init__(message)
        self.file, self.split, self.row = str(file), split, row


class MissingSourceError(DataError, FileNotFoundError):
    """A file a config needs is not where it was looked for."""


class UnknownConfigError(DataError, ValueError):
    """A config name no builder offers."""


class OptionError(DataError, ValueError):
    """A data set option the config does not have, or options that are not a mapping."""


__all__ = ["DataError", "MissingSourceError", "MosiDataError", "OptionError", "UnknownConfigError"]
