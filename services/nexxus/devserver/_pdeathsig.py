"""Exec a command so that it dies with its parent (Linux PR_SET_PDEATHSIG).

    python -m nexxus.devserver._pdeathsig [--user NAME] <parent pid> <command> [args...]

Doing this in a `preexec_fn` is unsafe once the parent has threads (gRPC's):
the forked child may deadlock or crash before exec. Here it runs after exec, in
a fresh single-threaded interpreter, and the setting survives the final execvp.

`--user NAME` first drops root to that user (servers such as PostgreSQL refuse
to run as root). The kernel clears the parent-death signal on a change of user,
so the signal is set after the switch.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import signal
import sys

PR_SET_PDEATHSIG = 1


def _become(user: str) -> None:
    entry = pwd.getpwnam(user)
    os.initgroups(entry.pw_name, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--user"]:
        _become(args[1])
        args = args[2:]
    parent, argv = int(args[0]), args[1:]
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        raise SystemExit(1)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
