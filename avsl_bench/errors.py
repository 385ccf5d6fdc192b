"""Typed errors raised by the library; the CLI maps each to a one-line message and an exit code."""

from __future__ import annotations


class AvslBenchError(Exception):
    """Base class: a problem the user can act on. `str(err)` is the one-line message."""

    exit_code = 1


class UsageError(AvslBenchError):
    """The command was called with options that do not fit together."""

    exit_code = 2


class UnknownNameError(UsageError):
    """A registry lookup failed (benchmark, method, binarisation mode...)."""


class DataFileError(AvslBenchError):
    """An input data file (annotation, list, manifest) is missing or malformed."""

    exit_code = 2


class ChecksumError(DataFileError):
    """A downloaded or mirrored file does not match its pinned digest."""


class DownloadError(AvslBenchError):
    """A file could not be fetched from its public URL."""


class SubmissionError(AvslBenchError):
    """A submitted prediction archive is invalid. The message names file, sample and problem."""

    exit_code = 2

    def __init__(self, path: object, problem: str, sample: str | None = None) -> None:
        where = f"{path}" if sample is None else f"{path}: sample {sample!r}"
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.sample = sample
        self.problem = problem


class ResultFileError(AvslBenchError):
    """A result.json (or its per-sample table) is invalid or inconsistent."""

    exit_code = 2
