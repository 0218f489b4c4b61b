"""Errors a user can act on. The CLI prints them as one line and exits 2 (no traceback)."""


class RgsynError(Exception):
    """Base class: the message says what is wrong, where, and what was expected."""


class ConfigError(RgsynError):
    """A params file has an unknown key, a wrong type or an out-of-range value."""


class DataError(RgsynError):
    """A dataset folder, file name, image or pairs file does not match its expected layout."""


class CheckpointError(RgsynError):
    """A model file is missing, unsafe, or incompatible with the configured model."""


class TrainingDiverged(RgsynError):
    """A loss or reward became NaN/inf; the message names the step."""
