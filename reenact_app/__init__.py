"""Reenact: real-time webcam face reenactment (application and runtime package)."""

from reenact_app.malloc_arenas import cap_malloc_arenas as _cap_malloc_arenas

__version__ = "0.1.0"

_cap_malloc_arenas()  # first, before any of the app's threads exist (see reenact_app.malloc_arenas)
