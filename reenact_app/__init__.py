"""Reenact: real-time webcam face reenactment (application and runtime package)."""

__version__ = "0.1.0"
