"""The paper profile end to end on fake releases: what a researcher with the real data runs.

Fake Market-1501, CUHK03-NP, CASIA-WebFace, LFW + insightface `.bin` sets and RFW in their exact
release layouts (tests/fakes/persons.py, faces.py), a tiny latent DiT in the hub's folder layout
and ImageNet-format ResNet-50 weights at their real shapes (tests/fakes/models.py). Then
`rgsyn params --profile paper`, with only sizes shrunk (steps, epochs, image counts, batch sizes,
DiT depth/width, downstream input sizes) and paths pointed at the fakes, and the real `dvc repro`
(stage commands run in-process: tests/pipeline_runner.py). Every table of the report must be
filled and `dvc status` clean afterwards.

Kept as the paper has them: DiT-XL/2's latent layout (4 channels, patch 2, learned sigma, 1000
classes, 32x32 latents for persons and 16x16 for faces, through an 8x VAE), CFG 4.0, ResNet-50 for
both re-ID and faces with strict ImageNet loading, the 512-d CosFace embedding, every variant,
ablation and reward variant.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fakes import faces, models, persons
from pipeline_runner import REPO, _cwd, dvc_repro_in_process

# Only sizes are shrunk (and paths pointed at the fakes); every other value is the paper profile's.
SHRINK = {
    # one seed keeps the test inside its CI budget; the statistics over seeds run in the smoke regression
    "seeds": [0],
    "prior": {"arch": {"num_layers": models.DIT_ARCH["num_layers"],
                       "num_attention_heads": models.DIT_ARCH["num_attention_heads"],
                       "attention_head_dim": models.DIT_ARCH["attention_head_dim"]}},
    "sampler": {"num_inference_steps": 2},
    "coldstart": {"steps": 2, "batch_size": 4, "checkpoint_every": 1},
    "generate": {"per_identity": 2, "batch_size": 16, "grid_identities": 2},
    "rl": {"steps": 1, "ids_per_step": 2, "samples_per_id": 2, "minibatches": 1, "checkpoint_every": 1},
    "encoder": {"epochs": 1},
    "reid": {"height": 128, "width": 64, "epochs": 1, "P": 4, "K": 2, "warmup_epochs": 0,
             "syn_per_batch": 4, "eval_batch_size": 64},
    "face": {"size": 56, "epochs": 1, "batch_size": 8, "syn_per_batch": 4,
             # not a size: the fake CASIA-WebFace is raw id folders of unaligned 250x250 faces (the
             # insightface release is aligned already), which the paper protocol aligns with MTCNN
             "align": "mtcnn"},
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    root = tmp_path_factory.mktemp("releases")
    t0 = time.perf_counter()
    counts = {
        "market1501": persons.write_market(root / "Market-1501-v15.09.15"),
        "cuhk03": persons.write_cuhk03(root / "cuhk03-np"),
        "casia_face": faces.write_casia(root / "CASIA-WebFace"),
        "verification": faces.write_verification(root / "face-verification"),
        "rfw_bias": faces.write_rfw(root / "RFW"),
    }
    models.write_dit_hub(root / "DiT-XL-2-256")
    models.write_resnet50_torchvision(root / "weights" / "resnet50-imagenet.safetensors")
    print(f"\nfake releases written in {time.perf_counter() - t0:.1f} s")
    return root, counts


def _paths(root: Path) -> dict:
    return {"market1501": str(root / "Market-1501-v15.09.15"), "cuhk03": str(root / "cuhk03-np"),
            "casia_face": str(root / "CASIA-WebFace"), "verification": str(root / "face-verification"),
            "rfw_bias": str(root / "RFW")}


def _check_cli(benchmark: str, root: str, capsys) -> dict:
    from rgsyn.cli import main

    capsys.readouterr()
    assert main(["data", "check", "--benchmark", benchmark, "--root", root]) == 0
    return json.loads(capsys.readouterr().out)


def test_data_check_counts_each_fake_release(releases, capsys):
    root, counts = releases
    paths = _paths(root)
    m = _check_cli("market1501", paths["market1501"], capsys)
    want = counts["market1501"]
    assert m["splits"] == {s: want[s] for s in ("train", "query", "gallery")}
    assert (m["junk_images"], m["distractor_images"]) == (want["junk_images"], want["distractor_images"])
    assert m["official_match"] is False        # a fake is not the official release
    c = _check_cli("cuhk03", paths["cuhk03"], capsys)
    assert {mode: c["modes"][mode]["splits"] for mode in c["modes"]} == counts["cuhk03"]
    f = _check_cli("casia_face", paths["casia_face"], capsys)
    assert (f["ids"], f["images"]) == (counts["casia_face"]["ids"], counts["casia_face"]["images"])
    r = _check_cli("rfw_bias", paths["rfw_bias"], capsys)
    for group, want in counts["rfw_bias"].items():
        assert r["groups"][group]["pairs"] == want["pairs"]
        assert r["groups"][group]["images_in_folder"] == want["images_in_folder"]
    v = _check_cli("verification", paths["verification"], capsys)
    for name, want in counts["verification"].items():
        got = v["sets"][name]
        assert {k: got[k] for k in want} == want, name
    assert v["sets"]["lfw"]["format"] == "pairs.txt" and v["sets"]["agedb"]["format"] == "bin"


@pytest.fixture(scope="module")
def paper_run(releases, tmp_path_factory):
    root, _ = releases
    work = tmp_path_factory.mktemp("paper")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{work}/mlflow.db")
    subprocess.run([sys.executable, "-m", "rgsyn.cli", "params", "--profile", "paper", "--out",
                    str(work / "params.yaml")], check=True, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    params = yaml.safe_load((work / "params.yaml").read_text())
    hub = root / "DiT-XL-2-256"
    over = _merge(SHRINK, {"data": {"paths": _paths(root)},
                           "prior": {"pretrained": str(hub), "vae": str(hub / "vae")},
                           "reid": {"pretrained": str(root / "weights" / "resnet50-imagenet.safetensors")},
                           "face": {"pretrained": str(root / "weights" / "resnet50-imagenet.safetensors")}})
    params = _merge(params, over)
    from rgsyn import config

    config.from_dict(params)   # still a valid profile
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (work / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    for paper in (REPO / "benchmarks").glob("*/paper.yaml"):
        (work / "benchmarks" / paper.parent.name).mkdir(parents=True, exist_ok=True)
        (work / "benchmarks" / paper.parent.name / "paper.yaml").write_text(paper.read_text())
    shutil.copy(REPO / "benchmarks" / "sweep_real_size.csv", work / "benchmarks")   # a dep of the report stage
    # the stages depend on the package's source folders, as in a clone
    shutil.copytree(REPO / "rgsyn", work / "rgsyn", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=work, check=True)
    # hardlinks: the ResNet-50 outputs are ~100 MB each, a copy into the cache would double them
    subprocess.run([sys.executable, "-m", "dvc", "config", "cache.type", "hardlink,copy"], cwd=work, check=True)
    t0 = time.perf_counter()
    timings = dvc_repro_in_process(work)
    print(f"paper-structure dvc repro: {len(timings)} stages in {time.perf_counter() - t0:.1f} s")
    mp.undo()
    return work, timings


def test_dvc_status_is_clean_after_repro(paper_run):
    work, timings = paper_run
    assert len(timings) >= 50, sorted(timings)
    out = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=work, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "up to date" in out.stdout, out.stdout


def test_every_table_is_filled(paper_run):
    work, _ = paper_run
    tables = sorted((work / "reports" / "tables").glob("*.md"))
    assert len(tables) >= 7, [t.name for t in tables]
    # A control whose variant the params do not configure yet (real_plus, syn_shuffled) reads "not run"
    # in the controls table, as it should; every other row of every table must be filled.
    params = yaml.safe_load((work / "params.yaml").read_text())
    configured = {*params["variants"], *params["syn_variants"]}
    unconfigured = [v for v in ("real_plus", "syn_shuffled") if v not in configured]

    def unfilled(t):
        lines = [ln for ln in t.read_text().splitlines() if "not run" in ln and ln.startswith("|")]
        if t.name == "controls.md":
            lines = [ln for ln in lines if not any(f"{v} −" in ln or f"− {v}" in ln for v in unconfigured)]
        return lines

    empty = {t.name: unfilled(t) for t in tables}
    assert not {k: v for k, v in empty.items() if v}, empty
    html = (work / "reports" / "report.html").read_text()
    assert "Market-1501" in html and "CUHK03" in html and "RFW" in html


def test_paper_sizes_reached_the_models(paper_run):
    """Faces were generated at 128 px from 16x16 latents, persons at 256 px; the ResNet-50 started
    from the ImageNet file; the 512-d embedding was trained."""
    import torch

    from rgsyn.generator.bundle import load_generator

    work, _ = paper_run
    with _cwd(work):
        faces_gen = load_generator("models/coldstart/faces")
        persons_gen = load_generator("models/coldstart/persons")
    assert (faces_gen.image_size, faces_gen.latent_size) == (128, 16)
    assert (persons_gen.image_size, persons_gen.latent_size) == (256, 32)
    assert faces_gen.scheduler.config.clip_sample is False
    enc = torch.load(work / "models" / "encoder" / "faces" / "reward.pt", weights_only=True)
    assert enc["config"]["embedding_dim"] == 512 and enc["config"]["backbone"] == "resnet50"
    check = json.loads((work / "data" / "world" / "check.json").read_text())
    assert check["pretrained"]["reid"]["backbone"] == "resnet50" and check["pretrained"]["reid"]["sha256"]
