"""The library side of `rgsyn preflight` (the command: rgsyn.stages.preflight).

- measure: one step in a fresh process; wall time and peak memory (GPU: max_memory_allocated; CPU:
  the process's resident high-water mark); out of memory caught, never a traceback;
- work: what each row's stage does in the full run (steps, FLOPs, from rgsyn.estimate and the tasks)
  and how a measured step projects onto it; the CPU's shrunk counts;
- table: the printed table, its JSON and the memory verdict with the knob to turn;
- calibrate: `rgsyn estimate --measured FILE` and the report's calibrated estimate.
"""
