"""Project exception types: CLIs catch these and print one line, never a stack trace."""


class TernaryVLMError(Exception):
    """Base class of the errors a user can cause (bad path, bad flag, bad file)."""


class CheckpointError(TernaryVLMError):
    """A model directory or file that cannot be loaded: not a checkpoint, unsupported, truncated, misshaped."""
