"""The preflight table, its JSON file, and the verdict on memory: does every step fit the device?

One row per measured step: stage/domain, the step's wall time, whether it ran shrunk and was scaled
(the FLOP ratio of the full-size step to the one measured), the steps of the full run, the
projected hours (rgsyn.preflight.work.project), the peak memory of the step's process against the
device's memory, and the FLOP-based hours of `rgsyn estimate` beside it.

A step that ran out of memory, or whose peak is above the device's memory (or `--memory-gib`), gets
one line naming the stage and the params key that lowers its memory (`KNOBS`).
"""
from __future__ import annotations

GIB = 2 ** 30

# stage -> the params keys that lower its peak memory, per domain where they differ
KNOBS = {
    "data": "the data check holds one image at a time; free memory on the machine",
    "prior": "prior.batch_size (toy pretraining); a pretrained DiT needs its weights in memory: a larger device",
    "coldstart": "coldstart.batch_size (or coldstart.image_size)",
    "encoder": {"persons": "reid.P / reid.K", "faces": "face.batch_size"},
    "rl": "rl.samples_per_id / rl.ids_per_step (or rl.minibatches, which splits the update)",
    "generate": "generate.batch_size",
    "train": {"persons": "reid.P / reid.K (or reid.syn_per_batch)", "faces": "face.batch_size (or face.syn_per_batch)"},
    "eval": {"persons": "reid.eval_batch_size", "faces": "the face evaluation batch (256 images)"},
}


def knob(stage: str, domain: str | None) -> str:
    k = KNOBS.get(stage, "its batch size")
    return k.get(domain, "its batch size") if isinstance(k, dict) else k


def memory_problem(row: str, stage: str, domain: str | None, peak: int | None, limit: int, oom: bool,
                   limit_name: str) -> str:
    """The one line that says a step does not fit, and what to lower."""
    if oom:
        return f"preflight: {row} ran out of memory; lower {knob(stage, domain)}"
    return (f"preflight: {row} peaks at {peak / GIB:.2f} GiB, above the {limit / GIB:.2f} GiB of {limit_name}; "
            f"lower {knob(stage, domain)}")


def _fmt(v, spec: str) -> str:
    return "" if v is None else format(v, spec)


def table_rows(records: list[dict], limit: int) -> list[dict]:
    """Table rows (strings) of the measured records, with a total row."""
    out = []
    for r in records:
        scaled = r["scale"] > 1.0 + 1e-9
        out.append({"stage": r["row"], "step s": f"{r['seconds']:.3g}",
                    "scaled": f"yes (x{r['scale']:.3g})" if scaled else "no",
                    "steps in full run": f"{r['steps']:,}", "projected h": f"{r['projected_s'] / 3600:.3g}",
                    "peak GiB / device": (f"{r['peak_bytes'] / GIB:.2f} / {limit / GIB:.0f}"
                                          if r["peak_bytes"] is not None else f"? / {limit / GIB:.0f}"),
                    "FLOP-based h": _fmt(None if r["flop_s"] is None else r["flop_s"] / 3600, ".3g")})
    flop = [r["flop_s"] for r in records if r["flop_s"] is not None]
    peaks = [r["peak_bytes"] for r in records if r["peak_bytes"] is not None]
    out.append({"stage": "total", "step s": "", "scaled": "", "steps in full run": "",
                "projected h": f"{sum(r['projected_s'] for r in records) / 3600:.3g}",
                "peak GiB / device": f"{max(peaks) / GIB:.2f} / {limit / GIB:.0f}" if peaks else "",
                "FLOP-based h": f"{sum(flop) / 3600:.3g}" if flop else ""})
    return out


def markdown(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def stage_hours(records: list[dict]) -> dict[str, float]:
    """{stage: projected hours} summed over the stage's rows (what `rgsyn estimate --measured` reads)."""
    out: dict[str, float] = {}
    for r in records:
        out[r["stage"]] = out.get(r["stage"], 0.0) + r["projected_s"] / 3600
    return out
