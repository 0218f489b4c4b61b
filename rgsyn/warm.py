"""Warm start: pipeline stages fork from a process that has already imported the libraries.

Each DVC stage is one `rgsyn <stage>` process, and most of a toy stage's start-up is importing
libraries, not work: on top of `import torch` (about 1.2 s), diffusers costs about 5 s (it pulls in
torch._dynamo), peft 2.8 s, torchreid 2.4 s, MLflow and its SQLAlchemy store 2.3 s, torchvision 1.3 s
(`python -X importtime`, this repo's venv). No lazy import removes those from a stage that uses the
library. So the `rgsyn` command, when run by DVC, asks a warm server to run the stage instead:

  client (`rgsyn train ...`, started by DVC)        server (`python -m rgsyn.warm`, one per user,
   - connects to the server's Unix socket            interpreter and sys.path; libraries imported)
   - sends argv, cwd, environment and its         -> forks a child per request; the child takes the
     stdin/stdout/stderr (SCM_RIGHTS)                client's fds, cwd, env and argv, drops every
   - forwards SIGINT/SIGTERM/SIGHUP to the child     imported `rgsyn` module (so edited code is used)
   - exits with the child's status                   and runs `rgsyn.cli.main`; the server reports
                                                     the child's exit status to the client

DVC still runs, hashes and caches every stage on its own, with the same command, deps and outs;
only the process that does the work is forked rather than started. The first stage of a session
finds no server, starts one in the background and runs in its own process as before. The server
exits after `RGSYN_WARM_IDLE` seconds (default 300) with no request and no running stage. Its
key (the socket name) covers the interpreter and the library folders with their mtimes, so
installing a package or switching the venv starts a new server; rgsyn's own modules are imported
afresh in every child from the client's sys.path, so edited code and another PYTHONPATH just work.

`RGSYN_WARM=0` turns it off (every stage is its own cold process). Under a distributed launcher
(`WORLD_SIZE`/`LOCAL_RANK` set) stages always run in their own process. The server never touches
CUDA (a forked child may then initialise it), and each child seeds what it uses as a fresh process
would (every stage seeds torch/numpy explicitly; Python's `random` is reseeded at fork).
"""
from __future__ import annotations

import array
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IDLE_SECONDS = float(os.environ.get("RGSYN_WARM_IDLE", "300"))
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


def enabled() -> bool:
    if os.environ.get("RGSYN_WARM", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return not any(os.environ.get(v) for v in ("WORLD_SIZE", "LOCAL_RANK", "RANK")) and hasattr(socket, "AF_UNIX")


def server_key() -> str:
    """Interpreter + library folders and their mtimes: a server only runs stages for clients that
    would import exactly its libraries (rgsyn itself is imported afresh from the client's sys.path)."""
    parts = [sys.executable, sys.version]
    for p in sys.path:
        if "site-packages" in p or "dist-packages" in p:
            parts.append(p)
            try:
                parts.append(str(os.stat(p).st_mtime_ns))
            except OSError:
                pass
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def socket_path() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"rgsyn-warm-{uid}" / f"{server_key()}.sock"


# ---------------------------------------------------------------- client

def _connect(path: Path) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return s
    except OSError:
        s.close()
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def start_server(path: Path) -> None:
    """Start the server in the background, detached from this process (its own session, no shared
    pipes: DVC waits for the stage's output pipes to close), unless one is already starting."""
    path.parent.mkdir(parents=True, exist_ok=True)
    starting = path.with_suffix(".starting")
    try:
        fd = os.open(starting, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            if _pid_alive(int(starting.read_text() or 0)) or time.time() - starting.stat().st_mtime < 5:
                return
        except (OSError, ValueError):
            return
        starting.unlink(missing_ok=True)
        return start_server(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGSYN_PROCESS")}
    with open(path.with_suffix(".log"), "ab") as log:   # one line per stage it ran
        proc = subprocess.Popen([sys.executable, "-m", "rgsyn.warm", "--socket", str(path)], cwd="/", env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True)
    os.write(fd, str(proc.pid).encode())
    os.close(fd)


def _read_line(s: socket.socket, buf: bytearray) -> str | None:
    while b"\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            return None
        buf.extend(chunk)
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line.decode()


def run_stage(argv: list[str], process_start: float) -> int | None:
    """Run `rgsyn <argv>` in a child of the warm server; its exit status, or None when no server
    took it (then the caller runs the stage itself; a server is started for the next stages)."""
    path = socket_path()
    s = _connect(path)
    if s is None:
        try:
            start_server(path)
        except OSError:
            pass
        return None
    env = dict(os.environ, RGSYN_PROCESS_START=repr(process_start))
    header = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": env, "path": sys.path}).encode() + b"\n"
    buf = bytearray()
    try:
        socket.send_fds(s, [header], [0, 1, 2])
        line = _read_line(s, buf)
    except OSError:
        line = None
    if not line or not line.startswith("pid "):
        s.close()
        return None
    pid = int(line.split()[1])

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
    s.close()
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


def _child(conn: socket.socket, listener: socket.socket, req: dict, fds: list[int]) -> None:
    """In the forked child: become the client's stage process, run it, exit with its status."""
    import atexit
    import threading

    rc = 1
    try:
        listener.close()
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
        for name in [m for m in sys.modules if m == "rgsyn" or m.startswith("rgsyn.")]:
            del sys.modules[name]   # the client's code, as edited now, not the server's

        def watch():  # the client died (killed by DVC): end the stage as its own process would end
            try:
                if not conn.recv(1):
                    os.kill(os.getpid(), signal.SIGTERM)
            except OSError:
                pass

        threading.Thread(target=watch, daemon=True).start()
        from rgsyn import cli

        try:
            rc = cli.main(req["argv"], warm=False)
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


def serve(path: Path) -> None:
    import select

    _preload()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp))
    listener.listen(64)
    os.replace(tmp, path)   # atomic: a client sees no socket or a ready one
    my_inode = os.stat(path).st_ino
    path.with_suffix(".starting").unlink(missing_ok=True)
    wake_r, wake_w = os.pipe()   # SIGCHLD wakes the loop at once: a stage's status is not delayed
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: dict[int, socket.socket] = {}
    last = time.monotonic()

    def still_ours() -> bool:
        try:
            return os.stat(path).st_ino == my_inode
        except OSError:
            return False

    try:
        while children or (time.monotonic() - last < IDLE_SECONDS and still_ours()):
            ready, _, _ = select.select([listener, wake_r], [], [], 5.0)
            if wake_r in ready:
                os.read(wake_r, 4096)
            if listener in ready:
                conn, _ = listener.accept()
                last = time.monotonic()
                try:
                    msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
                    while not msg.endswith(b"\n"):
                        more = conn.recv(1 << 20)
                        if not more:
                            raise OSError("client closed the connection")
                        msg += more
                    req = json.loads(msg)
                except (OSError, ValueError):
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    os.close(wake_r)
                    os.close(wake_w)
                    for other in children.values():
                        other.close()
                    _child(conn, listener, req, fds)
                for fd in fds:
                    os.close(fd)
                children[pid] = conn
                print(f"{time.strftime('%H:%M:%S')} pid {pid}: rgsyn {' '.join(req['argv'])} in {req['cwd']}",
                      file=sys.stderr, flush=True)
                try:
                    conn.sendall(f"pid {pid}\n".encode())
                except OSError:
                    pass
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                conn = children.pop(pid, None)
                if conn is None:
                    continue
                rc = os.waitstatus_to_exitcode(status)
                print(f"{time.strftime('%H:%M:%S')} pid {pid}: exit {rc}", file=sys.stderr, flush=True)
                try:
                    conn.sendall(f"rc {rc if rc >= 0 else 128 - rc}\n".encode())
                except OSError:
                    pass
                conn.close()
                last = time.monotonic()
    finally:
        listener.close()
        if still_ours():
            path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m rgsyn.warm", description="the warm stage server")
    ap.add_argument("--socket", default=None, help="socket path (default: the one clients look for)")
    args = ap.parse_args(argv)
    serve(Path(args.socket) if args.socket else socket_path())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
