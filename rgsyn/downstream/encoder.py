"""Identity encoders: real-data-only identity models used by the RL reward and the metrics.

`rgsyn encoder --domain persons|faces` trains two models per domain with the downstream training
code (`train_reid` / `train_face`) on real training data only:
- `reward` (seed `encoder.seed`): the features the multi-objective reward is computed on;
- `gold` (seed `encoder.gold_seed`): a held-out model of the same kind, never optimised against,
  used to watch for reward hacking.
persons = Market-1501 + CUHK03 training identities together (CUHK03 labels offset after Market's);
faces = the CASIA-style set.

Each is saved to `paths.encoder_path(domain, which)` as a plain `torch.save` dict
{"kind", "config", "num_classes", "input_size", "mean", "std", "state_dict"} that loads with
`torch.load(weights_only=True)`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rgsyn.downstream.datasets import FACE_MEAN, FACE_STD, IMAGENET_MEAN, IMAGENET_STD, normalise, resize_to
from rgsyn.errors import CheckpointError

FORMAT_VERSION = 1


class IdentityEncoder(nn.Module):
    """`encode(images)` with images (B,3,H,W) float in [0,1], any size -> L2-normalised (B, D)."""

    def __init__(self, model: nn.Module, kind: str, input_size: tuple[int, int], mean, std, threads: int = 0):
        super().__init__()
        self.model, self.kind = model, kind
        self.threads = threads   # CPU intra-op threads while encoding (0 = torch's setting); see rgsyn.threads.pinned
        self.input_size = tuple(input_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.eval()

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"IdentityEncoder.encode: expected images (B, 3, H, W), got {tuple(images.shape)}")
        from rgsyn import threads

        self.model.eval()
        dev = next(self.model.parameters()).device
        with threads.pinned(self.threads if dev.type == "cpu" else 0):
            x = normalise(resize_to(images.to(dev).float(), self.input_size).clamp(0, 1), self.mean, self.std)
            f = self.model.features(x) if self.kind == "reid" else self.model.embed(x)
            return F.normalize(f.float(), dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)

    @property
    def feature_dim(self) -> int:
        return int(self.encode(torch.zeros(1, 3, *self.input_size, device=next(self.parameters()).device)).shape[1])


def _build(kind: str, config: dict, num_classes: int) -> nn.Module:
    if kind == "reid":
        from rgsyn.downstream.reid import build_reid_model

        return build_reid_model(config["backbone"], num_classes, config["height"], config["width"], "")
    if kind == "face":
        from rgsyn.config import FaceParams
        from rgsyn.downstream.face import build_face_model

        fields = {f.name for f in dataclasses.fields(FaceParams)}
        # the saved state dict holds every weight; the pretrained file is not needed (nor read) here
        return build_face_model(FaceParams(**{k: v for k, v in config.items() if k in fields}), num_classes,
                                pretrained="")
    raise CheckpointError(f"unknown encoder kind {kind!r}")


def save_identity_encoder(path: str | Path, net: nn.Module, kind: str, config: dict, num_classes: int) -> None:
    from rgsyn import io

    if kind == "reid":
        size, mean, std = (config["height"], config["width"]), IMAGENET_MEAN, IMAGENET_STD
    else:
        size, mean, std = (config["size"], config["size"]), FACE_MEAN, FACE_STD
    io.torch_save(path, {"format": FORMAT_VERSION, "kind": kind, "config": config, "num_classes": num_classes,
                         "input_size": list(size), "mean": list(mean), "std": list(std),
                         "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}})


def load_identity_encoder(path: str | Path, device: str | torch.device = "cpu") -> IdentityEncoder:
    """Load an encoder written by `rgsyn encoder` (weights only; no code runs)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"identity encoder {p} does not exist; run `rgsyn encoder` first")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{p}: not a plain-weights identity encoder file ({type(e).__name__}: {e})") from None
    need = {"kind", "config", "num_classes", "input_size", "mean", "std", "state_dict"}
    if not isinstance(blob, dict) or not need <= set(blob):
        raise CheckpointError(f"{p}: missing keys {sorted(need - set(blob or {}))} of an identity encoder file")
    from rgsyn import threads

    n_threads = int(blob["config"].get("threads", 0))
    with threads.pinned(n_threads):
        net = _build(blob["kind"], blob["config"], blob["num_classes"])
    try:
        net.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{p}: weights do not fit the saved config: {str(e).splitlines()[0]}") from None
    return IdentityEncoder(net, blob["kind"], blob["input_size"], blob["mean"], blob["std"], n_threads).to(device)


# --------------------------------------------------------------------------------- stage
def persons_training_set(params):
    """Market + CUHK03 training records with one label space (CUHK03 after Market)."""
    from rgsyn.data.cuhk03 import read_cuhk03
    from rgsyn.data.market import read_market1501
    from rgsyn.downstream.datasets import LabelledImages, reid_label_map, reid_set

    paths, p = params.data.paths, params.reid
    sets, offset = [], 0
    for recs in (read_market1501(paths.market1501, splits=("train",)).train,
                 read_cuhk03(paths.cuhk03, mode=paths.cuhk03_mode, splits=("train",)).train):
        lm = reid_label_map(recs)
        s = reid_set(recs, (p.height, p.width), lm)
        s.labels += offset
        offset += len(lm)
        sets.append(s)
    return LabelledImages(images=torch.cat([s.images for s in sets]), labels=torch.cat([s.labels for s in sets]),
                          camids=torch.cat([s.camids for s in sets]), pids=torch.cat([s.pids for s in sets])), offset


def faces_training_set(params):
    from rgsyn.data.faces import read_id_folders
    from rgsyn.downstream.datasets import face_label_map, face_set

    recs = read_id_folders(params.data.paths.casia_face)
    lm = face_label_map(recs)
    return face_set(recs, params.face.size, lm), len(lm)


def _with_epochs(section, epochs: int):
    return dataclasses.replace(section, epochs=epochs) if epochs else section


def run(params, domain: str) -> dict:
    """Train and save the reward and gold identity encoders of `domain` (persons | faces)."""
    from rgsyn import distributed, paths, threads, tracking
    from rgsyn.checkpoint import Checkpointer
    from rgsyn.downstream.face import train_face
    from rgsyn.downstream.reid import train_reid

    if domain not in paths.DOMAINS:
        raise CheckpointError(f"encoder: unknown domain {domain!r}; choose one of {list(paths.DOMAINS)}")
    kind = "reid" if domain == "persons" else "face"
    section = _with_epochs(params.reid if kind == "reid" else params.face, params.encoder.epochs)
    section = dataclasses.replace(section, syn_per_batch=0)
    config = dataclasses.asdict(section)
    data, num_classes = persons_training_set(params) if kind == "reid" else faces_training_set(params)
    out = {}
    with tracking.stage_run(params, "encoder", run_name=f"encoder-{domain}") as run:
        tracking.log_params_section(run, params, "encoder", "reid" if kind == "reid" else "face")
        for which, seed in (("reward", params.encoder.seed), ("gold", params.encoder.gold_seed)):
            ck = Checkpointer(f"encoder-{domain}-{which}", {"config": config, "seed": seed, "n": len(data),
                                                            "classes": num_classes})
            on_step = lambda s, r, w=which: run.log_metrics({f"{w}.loss": r["loss"]}, step=s)  # noqa: E731
            train = train_reid if kind == "reid" else train_face
            with threads.pinned(section.threads):
                net, info = train(data, num_classes, section, seed, device=params.device, checkpointer=ck,
                                  on_step=on_step, precision=params.compute.precision)
            if distributed.is_main():   # every rank holds the same weights; one writes them
                save_identity_encoder(paths.encoder_path(domain, which), net, kind, config, num_classes)
            ck.clear()
            distributed.barrier()   # the file exists before any rank moves on
            run.log_metrics({f"{which}.train_seconds": info["train_seconds"]})
            out[which] = {"train_seconds": info["train_seconds"], "final_loss": info["history"][-1]["loss"],
                          "n_images": len(data), "n_classes": num_classes}
            if distributed.is_main():
                print(f"encoder {domain}/{which}: {len(data)} images, {num_classes} ids, "
                      f"{info['train_seconds']:.1f} s -> {paths.encoder_path(domain, which)}")
    return out
