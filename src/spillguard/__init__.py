"""Spillguard: keep customer data from leaking through mobile phones and mobile channels."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("spillguard")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"
