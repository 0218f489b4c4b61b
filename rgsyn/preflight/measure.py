"""Run one preflight step in a fresh process and measure its peak memory.

Every step (a function of rgsyn.stages.preflight_steps / preflight_downstream) runs in its own
process with the working directory in the scratch folder: forked from multiprocessing's fork server
(a process that imported the steps' modules and did nothing else), or spawned where
there is none. A fresh process per step makes the peak a per-step figure:

- on a GPU, `torch.cuda.max_memory_allocated` after `torch.cuda.reset_peak_memory_stats` (the
  tensors the step allocated on the device, model weights included);
- on CPU, the process's resident-set high-water mark (`resource.getrusage(RUSAGE_SELF).ru_maxrss`,
  Linux's VmHWM). It is process-wide and only grows, so it is read in a process that ran nothing
  else: the interpreter and the imports it shares with the fork server (~0.8 GiB of torch,
  diffusers, torchreid, mlflow), the models, the data the stage decodes and the step itself.

Out of memory is caught in the child (`torch.OutOfMemoryError`, `torch.cuda.OutOfMemoryError`,
`MemoryError`, or a CPU allocator failure) and reported as a result, never a traceback; a child
the kernel killed (a negative exit code, e.g. SIGKILL from the OOM killer) is reported as out of
memory too. Any other exception becomes a one-line failure; its traceback goes to
`<scratch>/preflight-<row>.log`.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import resource
import traceback
from pathlib import Path

def is_oom(e: BaseException) -> bool:
    """True for an out-of-memory error on any device (CPU allocators raise a plain RuntimeError)."""
    import torch

    oom = (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError), torch.cuda.OutOfMemoryError)
    return isinstance(e, oom) or (isinstance(e, RuntimeError) and (
        "can't allocate memory" in str(e) or "out of memory" in str(e).lower()))


def device_memory_bytes(device: str) -> int:
    """Total memory of the device the steps run on: the GPU's, or the machine's RAM."""
    import torch

    if torch.device(device).type == "cuda":
        return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def peak_bytes(device: str) -> int:
    import torch

    if torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated(torch.device(device)))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux


def reset_peak(device: str) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(torch.device(device))


def run_step(step, params, domain, device: str, log: Path) -> dict:
    """Call `step(params, domain)` here; returns {"rows", "peak_bytes"} or {"error", "message", "peak_bytes"}."""
    from rgsyn.errors import RgsynError

    reset_peak(device)
    try:
        rows = step(params, domain)
        return {"rows": rows, "peak_bytes": peak_bytes(device)}
    except BaseException as e:   # noqa: BLE001 - reported as a result, the parent decides the exit
        if is_oom(e):
            return {"error": "oom", "message": " ".join(str(e).split())[:300], "peak_bytes": peak_bytes(device)}
        log.write_text(traceback.format_exc())
        msg = str(e) if isinstance(e, RgsynError) else f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
        return {"error": "failed", "message": msg, "peak_bytes": peak_bytes(device)}


def _child(conn, step, params, domain, device: str, scratch: str, log: str) -> None:
    from rgsyn import threads

    os.chdir(scratch)
    threads.apply()
    conn.send(run_step(step, params, domain, device, Path(log)))
    conn.close()


def _context(preload: list[str]):
    """`forkserver` where there is one (a clean server process that imported the modules `preload`
    and never ran a torch op or touched CUDA forks each step's process), else `spawn`."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(preload)
    return ctx


def in_process(step, params, domain, device: str, scratch: Path, name: str, preload: list[str] = ()) -> dict:
    """`run_step` in a fresh process with its working directory in `scratch`; `preload`: the modules
    the fork server imports once for every step (the steps' imports: ~8 s a process otherwise,
    diffusers' alone ~5 s, against well under a second to fork)."""
    ctx = _context(list(preload))
    recv, send = ctx.Pipe(duplex=False)
    log = Path(scratch) / f"preflight-{name.replace('/', '-')}.log"
    proc = ctx.Process(target=_child, args=(send, step, params, domain, device, str(scratch), str(log)))
    proc.start()
    send.close()
    try:
        result = recv.recv()
    except EOFError:   # the child died without an answer
        result = None
    proc.join()
    if result is None:
        code = proc.exitcode
        if code is not None and code < 0:
            return {"error": "oom", "message": f"the process was killed by signal {-code} (out of memory?)",
                    "peak_bytes": None}
        return {"error": "failed", "message": f"the process exited with status {code}", "peak_bytes": None}
    return result
