"""`rgsyn data`: the `data` stage.

toy/smoke (`data.world: true`): build the toy identity world into `data.out`. It is rendered into
a temp folder next to it and renamed onto `data.out` only when complete, so a killed run never
leaves a half world. paper (`data.world: false`): check every dataset in `data.paths` with the
real readers (every image opened) and write `data.out/check.json`.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

from rgsyn import io as rio
from rgsyn import threads, tracking
from rgsyn.config import Params
from rgsyn.errors import DataError


# dvc.yaml output folder -> the data.paths entry checked for it in the paper profile
WORLD_FOLDERS = {"market1501": "market1501", "cuhk03": "cuhk03", "casia": "casia_face",
                 "verification": "verification", "rfw": "rfw_bias", "prior": "prior"}


# the data.paths entries whose training stages start from a pretrained backbone
PRETRAINED_USERS = ("market1501", "cuhk03", "casia_face")


def _flat_counts(counts: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in counts.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat_counts(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def _folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def build_into(params: Params, out: str | os.PathLike, progress: bool = True) -> dict:
    """Build the world into a temp folder, then swap it onto `out` (replacing an old world)."""
    from rgsyn.data.toy.world import build_world

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.tmp-*"):   # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    tmp.mkdir()
    try:
        workers = min(params.data.workers, threads.stage_threads())
        summary = build_world(params.data, tmp, workers=workers, progress=progress)
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def check_paths(params: Params, progress: bool = True) -> dict:
    from rgsyn.data.check import check_dataset

    paths = params.data.paths
    checks = {}
    for name in ("market1501", "cuhk03", "casia_face", "verification", "rfw_bias"):
        try:
            checks[name] = check_dataset(name, getattr(paths, name), profile=params.profile, progress=progress)
            if params.face.align == "none":
                _require_aligned_faces(name, getattr(paths, name), checks[name])
        except DataError as e:   # say which params key points there
            raise DataError(f"data.paths.{name}: {e}") from None
    return checks


def _require_aligned_faces(name: str, root: str, summary: dict) -> None:
    from rgsyn.data.check import require_one_size

    if name == "casia_face":
        require_one_size(summary, root)
    for sub, part in {**summary.get("sets", {}), **summary.get("groups", {})}.items():
        if part.get("format") != "bin":
            require_one_size(part, f"{root} ({sub})")


def check_pretrained(params: Params) -> dict:
    """Load every configured backbone weights file into its backbone, strictly, before any stage
    trains on it: a wrong file fails here, in the first minute, with the file and the bad keys.
    Returns {"reid": {...}, "face": {...}} with each file's path, size and sha256 ({} when unset)."""
    from rgsyn.downstream.face import build_face_model
    from rgsyn.downstream.reid import build_reid_model

    out = {}
    for section, build in (("reid", lambda p: build_reid_model(p.backbone, 2, p.height, p.width, p.pretrained)),
                           ("face", lambda p: build_face_model(p, 2))):
        p = getattr(params, section)
        if not p.pretrained:
            out[section] = {}
            continue
        build(p)   # raises CheckpointError naming the file, the first bad keys and the expected shapes
        f = Path(p.pretrained)
        out[section] = {"path": str(f), "backbone": p.backbone, "bytes": f.stat().st_size,
                        "sha256": rio.file_sha256(f)}
    return out


def write_digests(out: str | os.PathLike) -> None:
    """One content digest per output folder (`paths.world_digest`): the later stages depend on these
    small files, so `dvc status` walks each folder once (for this stage), not once per stage."""
    from rgsyn import paths

    for folder in WORLD_FOLDERS:
        rio.write_json(paths.world_digest(out, folder), {"folder": folder, **rio.tree_digest(Path(out) / folder)})


def run(params: Params) -> dict:
    dp = params.data
    with tracking.stage_run(params, "data") as run:
        tracking.log_params_section(run, params, "data")
        t0 = time.perf_counter()
        if dp.world:
            summary = build_into(params, dp.out)
            seconds = time.perf_counter() - t0
            metrics = _flat_counts({k: v for k, v in summary["counts"].items()})
            metrics = {k: v for k, v in metrics.items() if ".identity_group." not in k}
            metrics.update({"build_seconds": seconds, "n_images": summary["n_images"],
                            "world_mb": _folder_bytes(Path(dp.out)) / 2**20})
            run.log_metrics(metrics)
            run.log_artifact(Path(dp.out) / "summary.json")
            write_digests(dp.out)
            print(f"toy world: {summary['n_images']} images in {seconds:.1f} s -> {dp.out}")
            return summary
        checks = check_paths(params)
        weights = check_pretrained(params)
        seconds = time.perf_counter() - t0
        report = {"profile": params.profile, "paths": dataclasses.asdict(dp.paths), "checks": checks,
                  "pretrained": weights, "check_seconds": seconds}
        out = Path(dp.out) / "check.json"
        rio.write_json(out, report)
        # dvc.yaml declares one output per toy set; in the paper profile each holds its check
        # summary, so `dvc repro` has its outputs and later stages re-run when a check changes.
        # The weights files live outside the repo, so their hashes ride in the folders the encoder and
        # training stages depend on: a changed file re-runs what trained on it.
        for folder, name in WORLD_FOLDERS.items():
            pre = weights["face" if name == "casia_face" else "reid"] if name in PRETRAINED_USERS else {}
            rio.write_json(Path(dp.out) / folder / "check.json",
                           {**checks.get(name, {"checked": False}), **({"pretrained": pre} if pre else {})})
        rio.write_json(Path(dp.out) / "summary.json", {"profile": params.profile, "checks": checks})
        write_digests(dp.out)
        run.log_metrics({"check_seconds": seconds,
                         **{f"{b}.official_match": float(bool(c["official_match"]))
                            for b, c in checks.items() if c["official_match"] is not None}})
        run.log_artifact(out)
        print(f"checked {len(checks)} datasets in {seconds:.1f} s -> {out}")
        return report
