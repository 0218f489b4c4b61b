"""Warm start: pipeline stages fork from a process that has already imported the libraries.

Each DVC stage is one `rgsyn <stage>` process, and most of a toy stage's start-up is importing
libraries, not work: on top of `import torch` (about 1.2 s), diffusers costs about 5 s (it pulls in
torch._dynamo), peft 2.8 s, torchreid 2.4 s, MLflow and its SQLAlchemy store 2.3 s, torchvision 1.3 s
(`python -X importtime`, this repo's venv). No lazy import removes those from a stage that uses the
library. So the `rgsyn` command, when run by DVC, asks a warm server to run the stage instead:

  client (`rgsyn train ...`, started by DVC)        server (one per user and key, see below;
   - checks that the socket and the process          libraries imported)
     behind it are the user's own                  - refuses a peer of another uid (SO_PEERCRED)
   - sends argv, cwd, environment, sys.path,      -> forks a child per request; the child takes the
     umask, CPU affinity, rlimits, niceness and      client's fds, cwd, env, sys.path, argv and
     its stdin/stdout/stderr (SCM_RIGHTS)            process settings, drops every imported `rgsyn`
   - forwards SIGINT/SIGTERM/SIGHUP to the child     module (edited code is used) and runs the entry
   - exits with the child's status                   the client named (`rgsyn.cli:main`); the server
                                                     reports the child's exit status to the client

DVC still runs, hashes and caches every stage on its own, with the same command, deps and outs;
only the process that does the work is forked rather than started. The first stage of a session
finds no server, starts one in the background and runs in its own process as before. The server
exits after `RGSYN_WARM_IDLE` seconds (default 300) with no request and no running stage.

Same result as a cold start. What a child cannot change after the fork is what the server imported,
and that depends on the interpreter, its flags, every `sys.path` entry (with the mtimes of the
library folders, so installing a package starts a new server) and the environment variables that
libraries read at import or at interpreter start (`IMPORT_ENV`: PYTHON*, HF_*, TRANSFORMERS_*,
TORCH*, MLFLOW_*, the BLAS/OpenMP threads, locale, PATH, HOME ...). All of them make the server's key
(its socket name), and the server is started with the client's flags and sys.path: a client that
differs in any of them gets its own server. The rest is applied in the child before the stage runs.

Only its owner can reach it. The socket, log and start marker live in the private runtime folder
(`rgsyn.runtime_dir`: `$XDG_RUNTIME_DIR/rgsyn` or `<temp dir>/rgsyn-<uid>`, mode 0700, checked
with lstat; anything else: one message and the stage runs cold). The client sends nothing unless the
socket and the listening process (SO_PEERCRED) are its own user's; the server reads nothing from a
peer of another uid. The log and the marker are opened without following symlinks. The server never
blocks on one client: a connection must deliver its request within REQUEST_SECONDS, a malformed
one (invalid JSON, a field missing or of the wrong type) is answered `error ...` and closed with the
descriptors it carried; the client waits HANDSHAKE_SECONDS for the answer before it runs cold.

`RGSYN_WARM=0` turns it off (every stage is its own cold process). Under a distributed launcher
(`WORLD_SIZE`/`LOCAL_RANK` set) stages always run in their own process. The server never touches
CUDA (a forked child may then initialise it), and each child seeds what it uses as a fresh process
would (every stage seeds torch/numpy explicitly; Python's `random` is reseeded at fork).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from rgsyn import runtime_dir

IDLE_SECONDS = float(os.environ.get("RGSYN_WARM_IDLE", "300"))
REQUEST_SECONDS = 10.0      # a connection that has not sent its whole request by then is closed
HANDSHAKE_SECONDS = 60.0    # the client's wait for the server's answer before it runs cold
STARTING_STALE = 120.0      # a start marker this old is stale whatever it says
MAX_REQUEST = 1 << 23
# Environment variables read at import or interpreter start (prefixes): part of the server's key.
IMPORT_ENV = ("PYTHON", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "DIFFUSERS_", "PEFT_", "ACCELERATE_",
              "TORCH", "PYTORCH_", "MLFLOW_", "GIT_PYTHON_", "TQDM_", "MPL", "TIMM_", "TOKENIZERS_",
              "OMP_", "KMP_", "MKL_", "OPENBLAS_", "GOTO", "BLIS_", "NUMEXPR_", "NPY_", "NUMPY_",
              "SCIPY_", "ATEN_", "ONEDNN_", "DNNL_", "CUDA_", "CUBLAS_", "CUDNN_", "NVIDIA_", "TRITON_",
              "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "HOME", "PATH", "LD_", "LANG",
              "LC_", "TZ")
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
# The server is started with the client's sys.path, so that it imports what the client would.
BOOT = "import sys, json; sys.path[:] = json.loads(sys.argv[1]); from rgsyn.warm import main; sys.exit(main(sys.argv[2:]))"


def enabled() -> bool:
    if os.environ.get("RGSYN_WARM", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if any(os.environ.get(v) for v in ("WORLD_SIZE", "LOCAL_RANK", "RANK")):
        return False
    return hasattr(socket, "AF_UNIX") and hasattr(socket, "SO_PEERCRED") and hasattr(socket, "send_fds")


def import_env(env: dict | None = None) -> dict[str, str]:
    """The variables of `env` (default os.environ) that can change what an import does."""
    env = os.environ if env is None else env
    return {k: v for k, v in sorted(env.items()) if k.startswith(IMPORT_ENV)}


def client_path() -> list[str]:
    return [os.path.abspath(p) for p in sys.path]


def server_key() -> str:
    """Interpreter, flags, every sys.path entry (library folders with their mtimes) and IMPORT_ENV:
    a server only runs stages for clients that would import exactly what it imported."""
    parts = [sys.executable, sys.version, repr(sys.flags), repr(sys.warnoptions), repr(sys._xoptions)]
    for p in client_path():
        parts.append(p)
        if "site-packages" in p or "dist-packages" in p:
            try:
                parts.append(str(os.stat(p).st_mtime_ns))
            except OSError:
                pass
    parts += [f"{k}={v}" for k, v in import_env().items()]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def socket_path() -> Path | None:
    """The socket in the private runtime folder; None (after one message) when that is not private."""
    folder = runtime_dir.private_dir()
    return None if folder is None else folder / f"warm-{server_key()}.sock"


def peer_uid(s: socket.socket) -> int:
    """The uid of the process at the other end of a connected Unix socket (SO_PEERCRED)."""
    _pid, uid, _gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid


# ---------------------------------------------------------------- client

def _connect(path: Path) -> socket.socket | None:
    """A connection to the server, or None when there is none; NotPrivate when the socket or the
    process that listens on it belongs to another user (nothing is sent then)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.getuid():
        raise runtime_dir.NotPrivate(f"{path} is not a socket of yours (owner uid {st.st_uid})")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(HANDSHAKE_SECONDS)
    try:
        s.connect(str(path))
        uid = peer_uid(s)
    except OSError:
        s.close()
        return None
    if uid != os.getuid():
        s.close()
        raise runtime_dir.NotPrivate(f"the process listening on {path} runs as uid {uid}, not as you")
    return s


def _is_warm_server(pid: int) -> bool:
    if not runtime_dir.pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"rgsyn.warm" in f.read()
    except FileNotFoundError:
        return not os.path.isdir("/proc")
    except OSError:
        return False


def _start_in_progress(marker: Path) -> bool:
    """True when `marker` is a live start: a fresh regular file naming a running warm server (or
    being written right now). Planted, stale or foreign markers are not."""
    try:
        st = os.lstat(marker)
        age = time.time() - st.st_mtime
        if not stat.S_ISREG(st.st_mode) or age > STARTING_STALE:
            return False
        fd = runtime_dir.open_private(marker, os.O_RDONLY)
        try:
            text = os.read(fd, 32).strip()
        finally:
            os.close(fd)
        return age < 5 if not text else _is_warm_server(int(text))
    except (OSError, ValueError):
        return False


def start_server(path: Path) -> None:
    """Start the server in the background, detached from this process (its own session, no shared
    pipes: DVC waits for the stage's output pipes to close), unless one is already starting."""
    marker = path.with_suffix(".starting")
    for attempt in (0, 1):
        try:
            fd = runtime_dir.open_private(marker, os.O_WRONLY, exclusive=True)
            break
        except FileExistsError:
            if attempt or _start_in_progress(marker):
                return
            try:
                marker.unlink()   # stale or planted: removed, never followed
            except IsADirectoryError:
                marker.rmdir()
    try:
        log = runtime_dir.open_private(path.with_suffix(".log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("RGSYN_PROCESS")}
            cmd = [sys.executable, *subprocess._args_from_interpreter_flags(), "-c", BOOT,
                   json.dumps(client_path()), "--socket", str(path)]
            proc = subprocess.Popen(cmd, cwd="/", env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, close_fds=True)
        finally:
            os.close(log)
        os.write(fd, str(proc.pid).encode())
    except BaseException:
        marker.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def _read_line(s: socket.socket, buf: bytearray) -> str | None:
    while b"\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            return None
        buf.extend(chunk)
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line.decode(errors="replace")


def process_settings() -> dict:
    """What a forked child inherits from the server instead of the client, to be applied."""
    mask = os.umask(0o077)
    os.umask(mask)
    limits = {name: list(resource.getrlimit(getattr(resource, name)))
              for name in dir(resource) if name.startswith("RLIMIT_")}
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"umask": mask, "affinity": affinity, "rlimits": limits, "nice": os.getpriority(os.PRIO_PROCESS, 0)}


def run_stage(argv: list[str], process_start: float, entry: Callable) -> int | None:
    """Run `entry(argv)` (a module-level function of rgsyn that runs a stage in its own process,
    such as `rgsyn.cli.main`) in a child of the warm server, imported afresh there; its exit status,
    or None when no server took it (then the caller runs the stage itself; a server is started for
    the next stages)."""
    path = socket_path()
    if path is None:
        return None
    try:
        s = _connect(path)
        if s is None:
            start_server(path)
            return None
    except OSError as e:
        runtime_dir.tell(f"the warm stage server is off for this stage, which runs in its own process: {e}")
        return None
    with s:
        req = {"argv": list(argv), "cwd": os.getcwd(), "path": client_path(), "settings": process_settings(),
               "env": dict(os.environ, RGSYN_PROCESS_START=repr(process_start)),
               "entry": _entry_name(entry)}
        header = json.dumps(req).encode() + b"\n"
        buf = bytearray()
        try:
            sent = socket.send_fds(s, [header], [0, 1, 2])
            s.sendall(header[sent:])
            line = _read_line(s, buf)
        except OSError:
            line = None
        if line and line.startswith("error "):
            runtime_dir.tell(f"the warm stage server refused the stage ({line[6:]}); it runs in its own process")
        if not line or not line.startswith("pid "):
            return None
        s.settimeout(None)   # the stage runs as long as it runs
        return _wait_for_status(s, buf, int(line.split()[1]))


def _entry_name(entry: Callable) -> str:
    """`module:function`; a module run as `python -m rgsyn.cli` is named by its import name."""
    module = entry.__module__
    spec = getattr(sys.modules.get(module), "__spec__", None)
    if module == "__main__" and spec is not None:
        module = spec.name
    return f"{module}:{entry.__qualname__}"


def _wait_for_status(s: socket.socket, buf: bytearray, pid: int) -> int:
    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except OSError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    while True:
        try:
            line = _read_line(s, buf)
            break
        except InterruptedError:
            continue
    if not line or not line.startswith("rc "):
        print("rgsyn: the warm stage process ended without a status", file=sys.stderr)
        return 1
    return int(line.split()[1])


# ---------------------------------------------------------------- server

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
    a limit or niceness the child may not set (above the server's hard limit) stays the server's."""
    os.umask(settings["umask"])
    if settings["affinity"] and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, settings["affinity"])
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
            uid = peer_uid(conn)
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

    ap = argparse.ArgumentParser(prog="python -m rgsyn.warm", description="the warm stage server")
    ap.add_argument("--socket", default=None, help="socket path (default: the one clients look for)")
    args = ap.parse_args(argv)
    path = Path(args.socket) if args.socket else socket_path()
    if path is None:
        return 2
    try:
        serve(path)
    except runtime_dir.NotPrivate as e:
        print(f"rgsyn.warm: {e}: not serving", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
