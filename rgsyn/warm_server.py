"""The warm stage server: `python -m rgsyn.warm_server --socket PATH`, started by `rgsyn.warm`.

It imports the libraries once (PRELOAD), listens on a Unix socket in the private runtime folder and
forks one child per stage request; `rgsyn.warm` says why and what a client sends. The loop never
blocks on one connection: it accepts only peers of its own uid (SO_PEERCRED, checked before a byte
is read), reads requests without blocking, closes a connection that has not sent its whole request
within REQUEST_SECONDS, and answers a malformed request (invalid JSON, a missing or ill-typed field,
not three descriptors) with `error <what>` before closing it and the descriptors it carried.
The child replaces what a fork gave it from the server by the client's (descriptors, cwd,
environment, sys.path, umask, CPU affinity, rlimits, niceness), drops the server's `rgsyn`
modules and runs the entry the client named. The server exits after `RGSYN_WARM_IDLE` seconds (default 300) with no
request and no running stage, or when another server took its socket path.
"""
from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import sys
import time
from pathlib import Path

from rgsyn import runtime_dir, warm

IDLE_SECONDS = float(os.environ.get("RGSYN_WARM_IDLE", "300"))
REQUEST_SECONDS = 10.0      # a connection that has not sent its whole request by then is closed
MAX_REQUEST = 1 << 23
# What stages import; each is imported once by the server (a missing optional one is skipped).
PRELOAD = (
    "numpy", "yaml", "PIL.Image", "tqdm", "torch", "torch.nn.functional", "torch._inductor.config",
    "torchvision.transforms", "accelerate", "safetensors.torch",
    "diffusers", "diffusers.models.transformers.dit_transformer_2d", "diffusers.schedulers",
    "diffusers.models.autoencoders.autoencoder_kl", "peft", "peft.tuners.tuners_utils",
    "torchreid.reid.models", "torchreid.reid.losses", "timm", "open_clip", "facenet_pytorch",
    "scipy.linalg", "scipy.stats", "pandas", "mlflow", "mlflow.entities", "mlflow.tracking",
    "mlflow.store.tracking.sqlalchemy_store", "matplotlib", "seaborn",
)

def _preload() -> None:
    """Import PRELOAD (`RGSYN_WARM_PRELOAD`: a comma list instead, or `none`)."""
    import importlib
    import warnings

    names = os.environ.get("RGSYN_WARM_PRELOAD")
    names = PRELOAD if names is None else [n for n in names.split(",") if n.strip() and n != "none"]
    os.environ.setdefault("MPLBACKEND", "Agg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - an optional library that is not installed
                pass


def _strs(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _ints(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, int) for x in v)


_FIELDS = {
    "argv": lambda v: _strs(v) and len(v) > 0,
    "cwd": lambda v: isinstance(v, str),
    "env": lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()),
    "path": _strs,
    "entry": lambda v: isinstance(v, str) and re.fullmatch(r"rgsyn(\.\w+)*:\w+", v) is not None,
    "settings": lambda v: (isinstance(v, dict) and isinstance(v.get("umask"), int) and isinstance(v.get("nice"), int)
                           and (v.get("affinity") is None or _ints(v["affinity"]))
                           and isinstance(v.get("rlimits"), dict)
                           and all(_ints(x) and len(x) == 2 for x in v["rlimits"].values())),
}


def parse_request(msg: bytes, fds: list[int]) -> dict:
    """The request as a dict; ValueError naming what is wrong with it."""
    try:
        req = json.loads(msg)
    except ValueError:
        raise ValueError("the request is not valid JSON") from None
    if not isinstance(req, dict):
        raise ValueError("the request is not a JSON object")
    for name, ok in _FIELDS.items():
        if name not in req:
            raise ValueError(f"the request has no '{name}'")
        if not ok(req[name]):
            raise ValueError(f"the request's '{name}' is not valid")
    if len(fds) != 3:
        raise ValueError(f"the request carries {len(fds)} descriptors, not stdin, stdout and stderr")
    return req


def _apply_settings(settings: dict) -> None:
    """The client's umask, CPU affinity (it sets the fair thread share), rlimits and niceness;
    what the child may not set (a limit above the server's hard limit, a CPU outside the server's
    cpuset) stays the server's."""
    os.umask(settings["umask"])
    if settings["affinity"] and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, settings["affinity"])
        except OSError:   # CPUs outside the server's cpuset: the stage keeps the server's
            pass
    for name, (soft, hard) in settings["rlimits"].items():
        try:
            resource.setrlimit(getattr(resource, name), (soft, hard))
        except (AttributeError, ValueError, OSError):
            pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, settings["nice"])
    except OSError:
        pass


def _become_client(req: dict, fds: list[int]) -> None:
    """In the forked child: take the client's descriptors, cwd, env, sys.path, argv and settings,
    and forget the server's rgsyn modules (the client's code, as edited now, is imported)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in zip((0, 1, 2), fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = open(0, "r", closefd=False)
    sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    sys.path[:] = req["path"]
    sys.argv = ["rgsyn", *req["argv"]]
    _apply_settings(req["settings"])
    for name in [m for m in sys.modules if m == "rgsyn" or m.startswith("rgsyn.")]:
        del sys.modules[name]


def _child(conn: socket.socket, req: dict, fds: list[int]) -> None:
    """In the forked child: become the client's stage process, run it, exit with its status."""
    import atexit
    import importlib
    import threading

    rc = 1
    try:
        _become_client(req, fds)

        def watch():  # the client died (killed by DVC): end the stage as its own process would end
            try:
                if not conn.recv(1):
                    os.kill(os.getpid(), signal.SIGTERM)
            except OSError:
                pass

        threading.Thread(target=watch, daemon=True).start()
        module, _, func = req["entry"].partition(":")
        try:
            rc = getattr(importlib.import_module(module), func)(req["argv"])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except KeyboardInterrupt:
            rc = 130
        except BaseException:  # noqa: BLE001 - print it as an uncaught exception would be
            import traceback

            traceback.print_exc()
            rc = 1
        _join_threads()
        atexit._run_exitfuncs()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(rc if isinstance(rc, int) else 1)


def _join_threads() -> None:
    """End the child's threads as interpreter shutdown does (`threading._shutdown`): it runs the
    hooks registered with threading, which stop the workers of every `concurrent.futures` pool
    (such as MLflow's artifact-upload pool), then joins the non-daemon threads. Joining by hand
    first waited forever on an idle pool worker (a `rgsyn report` child hung after its work)."""
    import threading

    threading._shutdown()


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


class _Pending:
    """A connection whose request has not fully arrived."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.fds: list[int] = []
        self.deadline = time.monotonic() + REQUEST_SECONDS


class _Server:
    """The listening socket, the connections still sending their request, and the running children."""

    def __init__(self, path: Path) -> None:
        self.path = path
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(tmp))   # under umask 077: only the owner may connect
        self.listener.listen(64)
        os.replace(tmp, path)   # atomic: a client sees no socket or a ready one
        self.inode = os.stat(path).st_ino
        path.with_suffix(".starting").unlink(missing_ok=True)
        self.pending: dict[socket.socket, _Pending] = {}
        self.children: dict[int, socket.socket] = {}
        self.last = time.monotonic()
        self.wake_r, self.wake_w = os.pipe()   # SIGCHLD wakes the loop: a status is not delayed
        os.set_blocking(self.wake_w, False)

    def still_ours(self) -> bool:
        try:
            return os.stat(self.path).st_ino == self.inode
        except OSError:
            return False

    def busy(self) -> bool:
        return bool(self.children or self.pending)

    def accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
            uid = warm.peer_uid(conn)
        except OSError as e:
            _log(f"accept failed: {e}")
            return
        if uid != os.getuid():   # nothing is read from another user
            _log(f"refused a connection from uid {uid}")
            conn.close()
            return
        conn.setblocking(False)
        self.pending[conn] = _Pending()
        self.last = time.monotonic()

    def receive(self, conn: socket.socket) -> None:
        """Read what arrived; once the request is whole, start its child or answer its error."""
        p = self.pending[conn]
        try:
            msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 3)
        except BlockingIOError:
            return
        except OSError as e:
            return self.drop(conn, None, f"receive failed: {e}")
        p.fds.extend(fds)
        p.buf.extend(msg)
        if not msg:
            return self.drop(conn, None, "the client closed the connection before its request")
        if len(p.buf) > MAX_REQUEST or len(p.fds) > 3:
            return self.drop(conn, "the request is too large")
        if b"\n" not in p.buf:
            return
        try:
            req = parse_request(bytes(p.buf).partition(b"\n")[0], p.fds)
        except ValueError as e:
            return self.drop(conn, str(e))
        del self.pending[conn]
        self.start_child(conn, req, p.fds)

    def drop(self, conn: socket.socket, error: str | None, note: str | None = None) -> None:
        """Close a pending connection and the descriptors it carried, answering `error` if any."""
        p = self.pending.pop(conn)
        _log(f"bad request: {error}" if error else note)
        if error:
            try:
                conn.send(f"error {error}\n".encode())
            except OSError:
                pass
        for fd in p.fds:
            os.close(fd)
        conn.close()

    def expire(self) -> None:
        now = time.monotonic()
        for conn in [c for c, p in self.pending.items() if p.deadline < now]:
            self.drop(conn, f"no whole request within {REQUEST_SECONDS:g} s")

    def start_child(self, conn: socket.socket, req: dict, fds: list[int]) -> None:
        conn.settimeout(REQUEST_SECONDS)   # the status lines must not block the server either
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            self.listener.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            for other in [*self.children.values(), *self.pending]:
                other.close()
            for fd in [fd for p in self.pending.values() for fd in p.fds]:
                os.close(fd)   # another client's stdout held here would keep its reader waiting
            conn.settimeout(None)
            _child(conn, req, fds)
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn
        _log(f"pid {pid}: rgsyn {' '.join(req['argv'])} in {req['cwd']}")
        try:
            conn.sendall(f"pid {pid}\n".encode())
        except OSError:
            pass
        self.last = time.monotonic()

    def reap(self) -> None:
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            rc = os.waitstatus_to_exitcode(status)
            _log(f"pid {pid}: exit {rc}")
            try:
                conn.sendall(f"rc {rc if rc >= 0 else 128 - rc}\n".encode())
            except OSError:
                pass
            conn.close()
            self.last = time.monotonic()

    def close(self) -> None:
        for conn in list(self.pending):
            self.drop(conn, None, "the server is ending")
        self.listener.close()
        if self.still_ours():
            self.path.unlink(missing_ok=True)


def serve(path: Path) -> None:
    """Serve stages on `path` (in a private folder) until idle for IDLE_SECONDS or replaced."""
    import select

    runtime_dir.check_private(path.parent)
    os.umask(0o077)
    _preload()
    srv = _Server(path)
    signal.set_wakeup_fd(srv.wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    try:
        while srv.busy() or (time.monotonic() - srv.last < IDLE_SECONDS and srv.still_ours()):
            wait = min([5.0, *(p.deadline - time.monotonic() for p in srv.pending.values())])
            ready, _, _ = select.select([srv.listener, srv.wake_r, *srv.pending], [], [], max(wait, 0.0))
            if srv.wake_r in ready:
                os.read(srv.wake_r, 4096)
            if srv.listener in ready:
                srv.accept()
            for conn in ready:
                if conn in srv.pending:
                    srv.receive(conn)
            srv.expire()
            srv.reap()
    finally:
        srv.close()


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m rgsyn.warm_server", description="the warm stage server")
    ap.add_argument("--socket", default=None, help="socket path (default: the one clients look for)")
    args = ap.parse_args(argv)
    path = Path(args.socket) if args.socket else warm.socket_path()
    if path is None:
        return 2
    try:
        serve(path)
    except runtime_dir.NotPrivate as e:
        print(f"rgsyn.warm_server: {e}: not serving", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
