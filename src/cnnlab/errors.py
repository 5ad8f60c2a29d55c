"""Errors a user can cause. The CLI prints them as one line and exits with `exit_code`."""

from __future__ import annotations


class CnnlabError(Exception):
    """A problem with the user's input (unknown name, missing file, bad value). Exit code 1."""

    exit_code = 1


class UsageError(CnnlabError):
    """A command line that cannot be parsed or combines options that do not go together. Exit code 2."""

    exit_code = 2


class NonFiniteLossError(CnnlabError):
    """Training produced a NaN or infinite loss. Exit code 3."""

    exit_code = 3
