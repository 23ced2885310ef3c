"""Importing reenact_app caps glibc's malloc arenas (memory stays flat when switching after an export;
docs/reliability.md), and an explicit MALLOC_ARENA_MAX still wins. Counted with glibc's malloc_info in a
fresh interpreter where eight threads hold memory at once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"), reason="glibc only"
)

_COUNT_ARENAS = r"""
import ctypes, sys, tempfile, threading
import reenact_app

barrier = threading.Barrier(8)

def hold_memory():
    keep = [bytearray(4096) for _ in range(50)]  # malloc from this thread's arena
    barrier.wait()  # all eight alive at once, so none can hand its arena to another

threads = [threading.Thread(target=hold_memory) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.NamedTemporaryFile(suffix=".xml") as report:
    handle = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, handle)
    libc.fclose(handle)
    print(open(report.name).read().count("<heap nr="))
"""


def _arenas(env_extra: dict[str, str]) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env_extra
    out = subprocess.run([sys.executable, "-c", _COUNT_ARENAS], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.strip())


def test_import_caps_malloc_arenas():
    assert _arenas({}) <= 2


def test_explicit_malloc_arena_max_wins():
    assert _arenas({"MALLOC_ARENA_MAX": "16"}) > 2  # glibc's own default-like limit: one arena per thread here
