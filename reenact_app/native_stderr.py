"""Keep the native libraries' start-up chatter off the terminal of a `reenact` / `reenact-app` run.

mediapipe and TensorFlow Lite write informational lines from C++ straight to file descriptor 2 ("Created
TensorFlow Lite XNNPACK delegate for CPU", "Feedback manager requires a model with a single signature
inference", "Using NORM_RECT without IMAGE_DIMENSIONS ..."): a dozen lines on every run that bury the one
a user needs (e.g. "No face found in the avatar image"). These builds read no setting that turns them
off (GLOG_minloglevel, TF_CPP_MIN_LOG_LEVEL and Python's absl.logging do nothing: their absl logging is
compiled in, unexported), so a command-line run sends fd 2 through a pipe and a small thread that drops
those lines and passes everything else (errors, native warnings we don't know, child processes) through.
Python's own stderr (logging, tqdm, tracebacks) is rebound to the terminal directly, so it is neither
delayed nor reordered. `--verbose` leaves stderr alone. POSIX only; elsewhere a no-op.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

# absl/glog informational and warning lines ("I1206 ..." / "W0000 00:00:1796547820.020017  32332 file.cc:114] ..."),
# TensorFlow Lite's minimal logger ("INFO: ...") and absl's notice that logging is not initialised
CHATTER = re.compile(
    rb"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\]]+:\d+\] "
    rb"|INFO: "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)"
)


def is_chatter(line: bytes) -> bool:
    return CHATTER.match(line) is not None


class NativeStderrFilter:
    """fd 2 -> pipe -> drop chatter lines -> the original stderr. One per process (see install())."""

    def __init__(self) -> None:
        self.terminal = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._read_end = read_end
        self.dropped = 0
        self._thread = threading.Thread(target=self._pump, name="native-stderr-filter", daemon=True)
        self._thread.start()

    def _write(self, data: bytes) -> None:
        while data:
            try:
                data = data[os.write(self.terminal, data):]
            except InterruptedError:
                continue
            except OSError:
                return  # the terminal is gone: nothing to show it on

    def _pump(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._read_end, 65536)
            except InterruptedError:
                continue
            except OSError:
                break
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            kept = [line + b"\n" for line in lines if not is_chatter(line)]
            self.dropped += len(lines) - len(kept)
            if pending[:1] not in (b"I", b"W"):  # a partial line that can't be chatter (progress bars): now
                kept.append(pending)
                pending = b""
            self._write(b"".join(kept))
        if pending and not is_chatter(pending):
            self._write(pending)
        os.close(self._read_end)

    def close(self, timeout: float = 1.0) -> None:
        """fd 2 back to the terminal; what is still in the pipe is filtered and shown."""
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self.terminal, 2)  # the pipe's last writer in this process is gone: the pump sees EOF
        self._thread.join(timeout)  # (unless a child process still holds it: don't wait for that)


_installed: NativeStderrFilter | None = None


def install() -> NativeStderrFilter | None:
    """Filter this process's native stderr from now on (idempotent). Call it at the very start of a
    program that owns its process (not from library code or tests: it rebinds sys.stderr)."""
    global _installed
    if _installed is not None or os.name != "posix":
        return _installed
    try:
        sys.stderr.flush()
        flt = NativeStderrFilter()
    except OSError:  # no usable fd 2 (closed, a daemon): nothing to filter
        return None
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    sys.stderr = open(os.dup(flt.terminal), "w", buffering=1, encoding=encoding, errors="backslashreplace")
    atexit.register(flt.close)
    _installed = flt
    return flt
