"""User-facing errors: one line saying what is wrong and what to do.

The CLI catches `DfpanelError` and prints its message without a traceback; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class DfpanelError(Exception):
    """A problem the user can fix (bad path, wrong dataset folder, bad config...)."""

    exit_code = 2


class DataError(DfpanelError):
    """Input data (a video, a manifest, a dataset tree, a cache entry) is missing or malformed."""


class VideoError(DataError):
    """A single video could not be read: corrupt, truncated, empty, unsupported codec."""


class NoFaceError(DataError):
    """No face was found in a video."""


class WeightsError(DfpanelError):
    """Weights are missing, corrupt, tampered with, or made for another specialist."""

    @classmethod
    def folder_not_found(cls, folder) -> "WeightsError":
        # here, not in weights/folder.py, so a check before loading (dfpanel serve's) imports no model code
        return cls(f"{folder}: weights folder not found; pass --weights DIR holding <specialist>.safetensors + .json files")


class ConfigError(DfpanelError):
    """A config file or override is invalid."""
