"""mmsft: multimodal supervised fine-tuning and domain adaptation (``mmsft --help``; README.md)."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mmsft")
except PackageNotFoundError:  # run from a checkout that is not installed
    __version__ = "0.0.0+checkout"
