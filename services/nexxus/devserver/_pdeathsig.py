"""Exec a command so that it dies with its parent (Linux PR_SET_PDEATHSIG).

    python -m nexxus.devserver._pdeathsig <parent pid> <command> [args...]

Doing this in a `preexec_fn` is unsafe once the parent has threads (gRPC's):
the forked child may deadlock or crash before exec. Here it runs after exec, in
a fresh single-threaded interpreter, and the setting survives the final execvp.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    parent, argv = int(sys.argv[1]), sys.argv[2:]
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        raise SystemExit(1)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
