"""samkit's exceptions. Each message says what was wrong, what was expected and what to do."""


class SamkitError(Exception):
    """Base class of every error samkit raises on purpose."""


class ImageError(SamkitError, ValueError):
    """An image (or mask) could not be read or has an unsupported layout."""


class PromptError(SamkitError, ValueError):
    """Points, labels, boxes or mask inputs are invalid."""


class CheckpointError(SamkitError):
    """A checkpoint is missing, corrupt, unsafe or of another architecture."""


class ChecksumError(CheckpointError):
    """A downloaded file does not have the expected sha256."""


class ConfigError(SamkitError, ValueError):
    """An option is out of range or options contradict each other."""


class StateError(SamkitError, RuntimeError):
    """A method was called before what it needs (e.g. predict before set_image)."""


class LimitError(SamkitError, ValueError):
    """An input or a request is over one of samkit's limits. The message names the limit, its
    value and the setting that raises it."""


class PixelLimitError(ImageError, LimitError):
    """An image (or mask) has more pixels than the pixel limit (``SAMKIT_MAX_PIXELS``)."""
