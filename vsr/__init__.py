"""vsr: streaming video super-resolution built on AdcSR."""

__version__ = "0.1.0"
