"""Warm start: pipeline stages fork from a process that has already imported the libraries.
This module is the client side and the server's key; the server is `rgsyn.warm_server`.

Each DVC stage is one `rgsyn <stage>` process, and most of a toy stage's start-up is importing
libraries, not work: on top of `import torch` (about 1.2 s), diffusers costs about 5 s (it pulls in
torch._dynamo), peft 2.8 s, torchreid 2.4 s, MLflow and its SQLAlchemy store 2.3 s, torchvision 1.3 s
(`python -X importtime`, this repo's venv). No lazy import removes those from a stage that uses the
library. So the `rgsyn` command, when run by DVC, asks a warm server to run the stage instead:

  client (`rgsyn train ...`, started by DVC)        server (`rgsyn.warm_server`, one per user and
   - checks that the socket and the process          key, see below; libraries imported)
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
The caller names the function the child runs (`run_stage(argv, start, cli.main)`), so this module
imports no command code.

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
peer of another uid. The log and the marker are opened without following symlinks, and a start
marker that is stale, planted or not a live server's is removed rather than obeyed. The server never
blocks on one client (deadline per request, `error ...` for a malformed one: `rgsyn.warm_server`);
the client waits HANDSHAKE_SECONDS for the answer before it runs cold.

`RGSYN_WARM=0` turns it off (every stage is its own cold process). Under a distributed launcher
(`WORLD_SIZE`/`LOCAL_RANK` set) stages always run in their own process. The server never touches
CUDA (a forked child may then initialise it), and each child seeds what it uses as a fresh process
would (every stage seeds torch/numpy explicitly; Python's `random` is reseeded at fork).
"""
from __future__ import annotations

import hashlib
import json
import os
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

HANDSHAKE_SECONDS = 60.0    # the client's wait for the server's answer before it runs cold
STARTING_STALE = 120.0      # a start marker this old is stale whatever it says
# Environment variables read at import or interpreter start (prefixes): part of the server's key.
IMPORT_ENV = ("PYTHON", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "DIFFUSERS_", "PEFT_", "ACCELERATE_",
              "TORCH", "PYTORCH_", "MLFLOW_", "GIT_PYTHON_", "TQDM_", "MPL", "TIMM_", "TOKENIZERS_",
              "OMP_", "KMP_", "MKL_", "OPENBLAS_", "GOTO", "BLIS_", "NUMEXPR_", "NPY_", "NUMPY_",
              "SCIPY_", "ATEN_", "ONEDNN_", "DNNL_", "CUDA_", "CUBLAS_", "CUDNN_", "NVIDIA_", "TRITON_",
              "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "HOME", "PATH", "LD_", "LANG",
              "LC_", "TZ")
# The server is started with the client's sys.path, so that it imports what the client would.
BOOT = ("import sys, json; sys.path[:] = json.loads(sys.argv[1]); from rgsyn.warm_server import main; "
        "sys.exit(main(sys.argv[2:]))")


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
    if folder is None:
        return None
    path = folder / f"warm-{server_key()}.sock"
    if len(os.fsencode(path)) > 107:   # sun_path holds 108 bytes with the final NUL
        runtime_dir.tell(f"the warm stage server is off: the socket path {path} is too long for a Unix socket")
        return None
    return path


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
        except OSError:   # the server went away: no status
            line = None
            break
    if not line or not line.startswith("rc "):
        print("rgsyn: the warm stage process ended without a status", file=sys.stderr)
        return 1
    return int(line.split()[1])
