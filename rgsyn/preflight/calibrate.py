"""The estimate calibrated by a preflight: `rgsyn estimate --measured preflight.json` and the report.

`rgsyn estimate` turns FLOPs into hours at an assumed sustained throughput. A preflight file
(`rgsyn preflight --json FILE`) holds, per stage, the hours its measured steps project onto the
full run (`stage_hours`, on the device the preflight ran on). The calibrated table puts them side by
side, per stage:

    measured TFLOP/s = stage FLOPs / (preflight hours x 3600) / 1e12
    calibrated wall h on N devices = preflight hours / N            (ideal scaling, as the estimate)

Stages the estimate does not count (the data check, evaluation) are listed with their preflight
hours only. The report shows this table under the compute estimate when `PREFLIGHT_FILE`
(`reports/preflight.json`, relative to the repo root) exists: write it with
`rgsyn preflight --json reports/preflight.json` on the machine that will run the job.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

PREFLIGHT_FILE = Path("reports") / "preflight.json"


def read_preflight(path: str | Path) -> dict:
    from rgsyn.errors import ConfigError

    try:
        data = json.loads(Path(path).read_text())
        hours = {str(k): float(v) for k, v in data["stage_hours"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"--measured: {path} is not a preflight file written by `rgsyn preflight --json` "
                          f"({type(e).__name__}: {e})") from None
    return {**data, "stage_hours": hours}


def calibrated_table(params, preflight: dict, tflops: float = 400.0, gpus: int = 8):
    """(pandas DataFrame, Markdown string): the estimate per stage next to the preflight's hours."""
    import pandas as pd

    from rgsyn.estimate import stage_costs

    hours = dict(preflight["stage_hours"])
    rows = []
    for c in stage_costs(params):
        h = hours.pop(c.stage, math.nan)
        rows.append({"stage": c.stage, "PFLOP": c.flops / 1e15, f"GPU-h at {tflops:g} TFLOP/s": c.flops / (tflops * 1e12) / 3600,
                     "preflight h": h, "measured TFLOP/s": c.flops / (h * 3600) / 1e12 if h > 0 else math.nan,
                     f"calibrated wall h on {gpus}": h / gpus})
    for stage, h in hours.items():   # measured, not counted by the estimate
        rows.append({"stage": f"{stage} (not in the estimate)", "preflight h": h, f"calibrated wall h on {gpus}": h / gpus})
    df = pd.DataFrame(rows)
    total = {"stage": "total", "PFLOP": df["PFLOP"].sum(), f"GPU-h at {tflops:g} TFLOP/s": df[f"GPU-h at {tflops:g} TFLOP/s"].sum(),
             "preflight h": df["preflight h"].sum(min_count=1),
             f"calibrated wall h on {gpus}": df[f"calibrated wall h on {gpus}"].sum(min_count=1)}
    df = pd.concat([df, pd.DataFrame([total])], ignore_index=True)
    head = (f"Estimate for profile `{params.profile}` calibrated by the preflight on {preflight.get('device', '?')} "
            f"(shrink {preflight.get('shrink', '?')}): its projected hours replace the assumed {tflops:g} TFLOP/s.\n\n")
    return df, head + df.to_markdown(index=False, floatfmt=".3g", missingval="")


def run(params, measured: str, tflops: float = 400.0, gpus: int = 8, as_json: bool = False) -> list[dict]:
    """`rgsyn estimate --measured FILE`."""
    df, md = calibrated_table(params, read_preflight(measured), tflops, gpus)
    records = json.loads(df.to_json(orient="records"))
    print(json.dumps(records, indent=2) if as_json else md)
    return records


def report_table(params, path: str | Path = PREFLIGHT_FILE, tflops: float = 400.0, gpus: int = 8):
    """The calibrated table as a report `Table`, or None when there is no preflight file."""
    if not Path(path).is_file():
        return None
    from rgsyn.report.formats import Table

    pf = read_preflight(path)
    df, _ = calibrated_table(params, pf, tflops, gpus)
    cells = df.copy()
    for col in cells.columns:
        if cells[col].dtype.kind == "f":
            cells[col] = [("" if v != v else f"{v:.3g}") for v in cells[col]]
    notes = [f"From {path} (`rgsyn preflight --json {path}`, on {pf.get('device', '?')}): one step of every stage "
             "measured and projected onto the full run; `rgsyn estimate --measured FILE` prints the same table."]
    return Table("estimate_preflight", "Compute estimate calibrated by the preflight", cells.astype(str).fillna(""),
                 notes=notes)
