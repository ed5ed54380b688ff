"""Errors a user can cause, with the exit code the CLI contract gives them.

Exit codes (shared/DESIGN.md): 0 ok, 1 parity or threshold failed, 2 bad input or usage,
3 conversion or runtime failed.
"""

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_CONVERSION = 3


class StyleportError(Exception):
    """An error with a one-line message meant for the user and an exit code."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(" ".join(str(message).split()))
        if exit_code is not None:
            self.exit_code = exit_code


class BadInput(StyleportError):
    exit_code = EXIT_USAGE


class ConversionError(StyleportError):
    exit_code = EXIT_CONVERSION


class ThresholdFailed(StyleportError):
    exit_code = EXIT_FAIL
