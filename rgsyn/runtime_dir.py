"""The private per-user folder that holds the warm server's socket, log and start marker
(`rgsyn.warm`) and the registry of running stages (`rgsyn.threads`).

On a shared machine (a lab's GPU server, a cluster's login node) a folder in the shared temp dir
can be created first by another user, who then owns what appears in it: they could replace the
warm server's socket (and receive a stage's environment, secrets included, and its stdin/stdout),
or plant marker files that change a stage's thread count. So the folder is

  - `$XDG_RUNTIME_DIR/rgsyn` when `XDG_RUNTIME_DIR` is set (the XDG spec makes that folder the
    user's own, mode 0700; it is checked all the same),
  - else `<temp dir>/rgsyn-<uid>`, created with mode 0700,

and it is used only when `lstat` shows a folder (not a symlink) owned by this user with mode
exactly 0700. Anything else is refused with one message to stderr (once per process): the warm
server and the shared thread count are then off, and the stage runs in its own process, as
`RGSYN_WARM=0` would run it. Files inside are opened with `open_private` (no symlink followed,
a regular file of this user only).
"""
from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
from pathlib import Path

_told: set[str] = set()   # refusals already printed by this process


class NotPrivate(OSError):
    """A folder or file that another user could control."""


def _base() -> tuple[Path, Path]:
    """(folder, its parent) before any check."""
    xdg = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    if xdg:
        return Path(xdg) / "rgsyn", Path(xdg)
    tmp = Path(tempfile.gettempdir())
    return tmp / f"rgsyn-{os.getuid()}", tmp


def check_private(path: Path, exact: bool = True) -> None:
    """Raise NotPrivate unless `path` is a folder (not a symlink) owned by this user with mode 0700
    (`exact=False`: at least no access for group and others)."""
    try:
        st = os.lstat(path)
    except OSError as e:
        raise NotPrivate(f"{path}: {e.strerror}") from e
    uid = os.getuid()
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        raise NotPrivate(f"{path} is a symlink, not a folder")
    if not stat.S_ISDIR(st.st_mode):
        raise NotPrivate(f"{path} is not a folder")
    if st.st_uid != uid:
        raise NotPrivate(f"{path} is owned by uid {st.st_uid}, not by you (uid {uid})")
    if (mode != 0o700) if exact else (mode & 0o077):
        raise NotPrivate(f"{path} has mode {mode:04o}, not 0700")


def private_dir() -> Path | None:
    """The private folder (created if missing), or None after one message when it is not private."""
    path, parent = _base()
    try:
        if parent != Path(tempfile.gettempdir()):
            check_private(parent, exact=False)   # $XDG_RUNTIME_DIR itself
        try:
            os.mkdir(path, 0o700)   # the umask may only take bits away: nobody else gets in
            os.chmod(path, 0o700)     # ours: a sticky temp dir lets nobody swap it
        except FileExistsError:
            pass
        check_private(path)
        return path
    except OSError as e:
        reason = str(e) if isinstance(e, NotPrivate) else f"{path}: {e.strerror or e}"
        tell(f"refusing the runtime folder: {reason}. The warm stage server and the shared thread "
             f"count are off; the stage runs in its own process. Remove it, or set XDG_RUNTIME_DIR "
             f"to a folder of yours with mode 0700.")
        return None


def tell(message: str) -> None:
    """Print `rgsyn: <message>` to stderr, once per process (a stage's step loop asks again and again)."""
    if message not in _told:
        _told.add(message)
        print(f"rgsyn: {message}", file=sys.stderr, flush=True)


def open_private(path: Path, flags: int, exclusive: bool = False) -> int:
    """os.open without following a symlink (O_NOFOLLOW; O_CREAT|O_EXCL with `exclusive`; never
    blocking on a planted FIFO), then checked: a regular file of this user with no other hard
    link, else NotPrivate."""
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    if exclusive:
        flags |= os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:   # the last component is a symlink
            raise NotPrivate(f"{path} is a symlink") from e
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_nlink != 1:
        os.close(fd)
        raise NotPrivate(f"{path} is not a regular file of yours")
    os.set_blocking(fd, True)
    return fd


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
