"""The arrowroot Flight server: catalog lookups, file sources and Arrow streams wired together."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("arrowroot")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"
