"""User-facing errors: one exception type the CLI turns into a one-line message and exit code 2."""
from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (file, config, name). The CLI prints it and exits with code 2.

    ``where`` names the place (file, file:line, key path); ``expected`` says what would be valid.
    """

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, expected: str | None = None):
        self.message = message
        self.where = where
        self.expected = expected
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.expected:
            text += f" (expected {self.expected})"
        # one line whatever the input held: a newline or carriage return quoted from a file or the command line is escaped
        return text.replace("\r", "\\r").replace("\n", "\\n")


def suggest(name: str, choices) -> str:
    """A ' Did you mean X?' hint for a misspelt name, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""
