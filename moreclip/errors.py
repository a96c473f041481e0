"""Exceptions that the CLI turns into one clear line instead of a traceback."""

from __future__ import annotations

import os


class MoreclipError(Exception):
    """Base class: an error the user can act on. The CLI prints ``error: <message>`` and exits 2."""


class ConfigError(MoreclipError):
    """A configuration key, type or value is wrong."""


class ManifestError(MoreclipError):
    """A manifest file is missing, unreadable or does not follow the schema."""


class RecordError(MoreclipError):
    """One data record (WFDB record, image, report) is missing, corrupt or malformed.

    Always names the file and the problem, e.g. ``ecg/p001.hea: 11 leads, expected 12``.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
