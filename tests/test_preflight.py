"""`rgsyn preflight` and `rgsyn estimate --measured`, on the paper profile over fake releases.

The inputs are the paper-structure test's (tests/test_paper_structure.py: fake Market-1501,
CUHK03-NP, CASIA-WebFace, verification sets and RFW in their release layouts, the DiT in the hub's
folder layout, torchvision ResNet-50 weights), with its shrunk sizes. The CI tests run the faces
domain end to end (every stage), the person domain's generate step alone (its inputs made by the
unmeasured steps before it) under a tiny `--memory-gib`, a failing data check, and the calibrated
estimate's arithmetic on known numbers.

`test_full_size_preflight` (marker `fullsize`, deselected by default; `pytest -m fullsize
tests/test_preflight.py -s`) builds the paper profile's real architectures with random weights,
DiT-XL/2-256 in the hub layout with its legacy `Transformer2DModel` config and the SD VAE,
torchvision ResNet-50 and timm ViT-B/16 state dicts, and runs `rgsyn preflight` on them at the
paper profile's sizes (shrunk per step on CPU, scaled by FLOPs). About 15 minutes on 2 CPU cores.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch
import yaml

from fakes import faces, models, persons
from test_paper_structure import SHRINK, _merge, _paths


def write_inputs(root: Path, full_size: bool = False) -> Path:
    """Fake releases and weights under `root`; returns the params file (paper profile)."""
    from rgsyn import config

    persons.write_market(root / "Market-1501-v15.09.15")
    persons.write_cuhk03(root / "cuhk03-np")
    faces.write_casia(root / "CASIA-WebFace")
    faces.write_verification(root / "face-verification")
    faces.write_rfw(root / "RFW")
    hub = root / "DiT-XL-2-256"
    arch = dict(arch=models.DIT_XL_2, vae=models.SD_VAE) if full_size else {}
    models.write_dit_hub(hub, **arch)
    weights = models.write_resnet50_torchvision(root / "weights" / "resnet50-imagenet.safetensors")
    # full size: only the face alignment of the unaligned fake CASIA differs from the paper profile
    sizes = {"face": {"align": "mtcnn"}} if full_size else SHRINK
    over = _merge(sizes, {"data": {"paths": _paths(root)}, "prior": {"pretrained": str(hub), "vae": str(hub / "vae")},
                          "reid": {"pretrained": str(weights)}, "face": {"pretrained": str(weights)}})
    params = _merge(config.profile_dict("paper"), over)
    config.from_dict(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root / "params.yaml"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return write_inputs(tmp_path_factory.mktemp("preflight-inputs"))


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def _preflight(params: Path, *args: str) -> int:
    from rgsyn.cli import main

    return main(["preflight", "--params", str(params), *args])


def test_faces_end_to_end_prints_the_table_and_writes_only_the_scratch_folder(inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = _tree(inputs.parent)
    out = tmp_path / "out" / "preflight.json"
    assert _preflight(inputs, "--domains", "faces", "--json", str(out), "--scratch", str(tmp_path / "s")) == 0
    text = capsys.readouterr().out
    rows = ["data", "prior", "coldstart/faces", "encoder/faces", "rl/faces", "generate/faces", "train/faces", "eval/faces"]
    for row in rows:
        assert f"| {row} |" in text, text
    assert "persons" not in text
    assert _tree(inputs.parent) == before                              # the inputs untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "s"]  # nothing but the JSON and the scratch
    assert (tmp_path / "s" / "models" / "coldstart" / "faces" / "identities.json").is_file()
    pf = json.loads(out.read_text())
    assert [r["row"] for r in pf["rows"]] == rows and pf["problems"] == []
    by_row = {r["row"]: r for r in pf["rows"]}
    p = yaml.safe_load(inputs.read_text())
    n_casia = faces.write_casia.__defaults__[0] * faces.write_casia.__defaults__[1]   # ids x images per id
    # FaceTask: epochs x (images // batch) steps per encoder, reward + gold
    assert by_row["encoder/faces"]["steps"] == 2 * p["face"]["epochs"] * (n_casia // p["face"]["batch_size"])
    assert by_row["rl/faces"]["steps"] == len(p["rl"]["reward_variants"]) * p["rl"]["steps"]
    assert by_row["generate/faces"]["scale"] == pytest.approx(8.0)   # batch 16 of the params, 2 measured
    for r in pf["rows"]:
        assert r["seconds"] > 0 and r["projected_s"] >= r["seconds"] * 0.999 and r["peak_bytes"] > 2 ** 27
    assert pf["stage_hours"]["rl"] == pytest.approx(by_row["rl/faces"]["projected_s"] / 3600)


def test_a_step_above_the_stated_memory_names_the_stage_and_the_knob(inputs, tmp_path, monkeypatch, capsys):
    """--stages picks the persons' generate step; the prior and cold start it reads are made first,
    unmeasured; its peak is above --memory-gib: one line, exit 1, no traceback."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "pf.json"
    rc = _preflight(inputs, "--stages", "generate", "--domains", "persons", "--memory-gib", "0.05",
                    "--json", str(out))
    cap = capsys.readouterr()
    assert rc == 1
    assert [ln for ln in cap.err.splitlines() if ln.startswith("preflight:")] == [ln for ln in cap.err.splitlines()
                                                                                 if "generate/persons" in ln]
    assert "generate/persons peaks at" in cap.err and "lower generate.batch_size" in cap.err
    assert "Traceback" not in cap.err + cap.out
    assert [r["row"] for r in json.loads(out.read_text())["rows"]] == ["generate/persons"]
    assert list(tmp_path.iterdir()) == [out]   # the default scratch folder is a removed temp folder


def test_a_failing_stage_is_named_and_exits_non_zero(inputs, tmp_path, monkeypatch, capsys):
    p = yaml.safe_load(inputs.read_text())
    p["data"]["paths"]["casia_face"] = str(tmp_path / "missing")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    monkeypatch.chdir(tmp_path)
    assert _preflight(tmp_path / "params.yaml", "--stages", "data") == 1
    err = capsys.readouterr().err
    assert "preflight: data failed: data.paths.casia_face:" in err and "Traceback" not in err


def test_bad_arguments_and_pipeline_folders_are_refused(inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _preflight(inputs, "--stages", "rl,bogus") == 2
    assert "--stages: bogus" in capsys.readouterr().err
    assert _preflight(inputs, "--scratch", "models/preflight") == 2
    assert "pipeline's own folders" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()


def test_out_of_memory_in_a_step_is_a_result_not_a_traceback(tmp_path):
    from rgsyn.preflight import measure, table

    def step(params, domain):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    r = measure.run_step(step, None, "persons", "cpu", tmp_path / "log")
    assert r["error"] == "oom" and r["peak_bytes"] > 0
    assert measure.is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"))
    assert not measure.is_oom(RuntimeError("shape mismatch"))
    line = table.memory_problem("rl/persons", "rl", "persons", None, 2 ** 30, True, "the device")
    assert line == ("preflight: rl/persons ran out of memory; lower rl.samples_per_id / rl.ids_per_step "
                    "(or rl.minibatches, which splits the update)")


def test_on_a_gpu_the_peak_is_the_device_allocator_s(tmp_path, monkeypatch):
    """The CUDA path of the measurement, with the allocator's counters stood in for (no GPU here)."""
    from types import SimpleNamespace

    from rgsyn.preflight import measure

    calls = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d: calls.append(("reset", d.type)))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d: 7 * 2 ** 30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=80 * 2 ** 30))

    def step(params, domain):
        calls.append(("step", domain))
        return [{"row": "x"}]

    assert measure.run_step(step, None, "faces", "cuda", tmp_path / "log") == {"rows": [{"row": "x"}],
                                                                              "peak_bytes": 7 * 2 ** 30}
    assert calls == [("reset", "cuda"), ("step", "faces")]
    assert measure.device_memory_bytes("cuda") == 80 * 2 ** 30


def test_estimate_measured_replaces_the_assumed_throughput(tmp_path, monkeypatch, capsys):
    """Known numbers: the preflight projects rl at 10 h and coldstart at 2 h on its device."""
    from rgsyn import config
    from rgsyn.cli import main
    from rgsyn.estimate import stage_costs
    from rgsyn.preflight.calibrate import calibrated_table, report_table

    monkeypatch.chdir(tmp_path)
    params = config.from_dict(config.profile_dict("smoke"))
    pf = {"device": "cuda", "shrink": "none", "stage_hours": {"rl": 10.0, "coldstart": 2.0, "eval": 1.0}}
    df, md = calibrated_table(params, pf, tflops=100.0, gpus=4)
    rows = {r["stage"]: r for r in df.to_dict(orient="records")}
    flops = {c.stage: c.flops for c in stage_costs(params)}
    assert rows["rl"]["measured TFLOP/s"] == pytest.approx(flops["rl"] / (10 * 3600) / 1e12)
    assert rows["rl"]["calibrated wall h on 4"] == pytest.approx(2.5)
    assert rows["rl"]["GPU-h at 100 TFLOP/s"] == pytest.approx(flops["rl"] / 100e12 / 3600)
    assert math.isnan(rows["train"]["preflight h"])
    assert rows["eval (not in the estimate)"]["preflight h"] == 1.0
    assert rows["total"]["preflight h"] == pytest.approx(13.0)
    assert report_table(params) is None                        # no reports/preflight.json: no table
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "preflight.json").write_text(json.dumps(pf))
    assert report_table(params, tflops=100.0, gpus=4).df.shape == df.shape
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(config.profile_dict("smoke")))
    assert main(["estimate", "--measured", "reports/preflight.json", "--tflops", "100", "--gpus", "4"]) == 0
    assert "calibrated by the preflight on cuda" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{}")
    assert main(["estimate", "--measured", "bad.json"]) == 2
    assert "not a preflight file" in capsys.readouterr().err


@pytest.mark.fullsize
def test_full_size_preflight(tmp_path, monkeypatch, capsys):
    """The paper profile's real architectures (random weights) through `rgsyn preflight`."""
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    params = write_inputs(tmp_path / "inputs", full_size=True)
    vit = models.write_vit_timm(tmp_path / "inputs" / "weights" / "vit-b16-imagenet.safetensors")
    print(f"\nfull-size inputs written in {time.perf_counter() - t0:.0f} s")
    t1 = time.perf_counter()
    rc = _preflight(params, "--json", str(tmp_path / "preflight.json"))
    out = capsys.readouterr()
    print(out.out, out.err[-3000:], f"\nrgsyn preflight at full size: {time.perf_counter() - t1:.0f} s", sep="\n")
    assert rc == 0, out.err[-3000:]
    pf = json.loads((tmp_path / "preflight.json").read_text())
    assert len(pf["rows"]) == 14 and pf["problems"] == []
    p = yaml.safe_load(params.read_text())
    p["reid"].update(backbone="vit_b16", pretrained=str(vit))   # the other re-ID backbone of the paper
    (tmp_path / "vit.yaml").write_text(yaml.safe_dump(p))
    t2 = time.perf_counter()
    rc = _preflight(tmp_path / "vit.yaml", "--stages", "train", "--domains", "persons")
    out = capsys.readouterr()
    print(out.out, f"\nViT-B/16 train + eval: {time.perf_counter() - t2:.0f} s", sep="\n")
    assert rc == 0, out.err[-3000:]
