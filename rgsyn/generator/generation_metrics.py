"""Generation quality and privacy of a synthetic set, on identity-encoder features.

On the features of the held-out **gold** identity encoder (`paths.encoder_path(domain, "gold")`,
never optimised against): feature Frechet distance and density/coverage of synthetic vs the real
training split, memorisation (nearest-real-train cosine; share above `generate.memorisation_threshold`)
and the nearest-prototype identity accuracy. Next to them, on the **reward** encoder the RL
optimises: its identity accuracy (`identity_accuracy_reward`) and the mean semantic-consistency
reward R_sem (`rgsyn.metrics.identity`, the definition the reward uses). Reward accuracy rising
while gold accuracy falls is reward hacking, and the report flags it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rgsyn import paths
from rgsyn.errors import CheckpointError


def load_identity_encoder(path, device="cpu"):
    from rgsyn.downstream.encoder import load_identity_encoder as _load

    return _load(path, device=device)


def _load_batch(paths_: list[str], size: tuple[int, int]) -> torch.Tensor:
    from rgsyn.data.images import load_image

    ims = []
    for p in paths_:
        im = load_image(p)
        if im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BICUBIC)
        ims.append(torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1))
    return torch.stack(ims).float() / 255


@torch.no_grad()
def encode_paths(encoder, image_paths: list[str], size: tuple[int, int], device, batch: int = 128) -> torch.Tensor:
    feats = []
    for i in range(0, len(image_paths), batch):
        x = _load_batch(image_paths[i:i + batch], size).to(device)
        feats.append(encoder.encode(x).float().cpu())
    return torch.cat(feats) if feats else torch.zeros(0, 1)


ENCODERS = ("gold", "reward")


def check_encoders(domain: str) -> None:
    for which in ENCODERS:
        enc_path = paths.encoder_path(domain, which)
        if not Path(enc_path).is_file():
            raise CheckpointError(f"identity encoder {enc_path} is missing; the generation metrics need the "
                                  f"{domain} gold and reward encoders (run `rgsyn encoder --domain {domain}` first)")


def generation_metrics(domain: str, real_paths: list[str], real_labels: list, syn_paths: list[str],
                       syn_labels: list, size: tuple[int, int], device, threshold: float) -> dict:
    """`quality_metrics` on the gold encoder's features, plus the reward encoder's identity accuracy
    (`identity_accuracy_reward`) and mean R_sem (`mean_reward_sem`, the reward as RL sees it)."""
    out = {}
    for which in ENCODERS:
        encoder = load_identity_encoder(paths.encoder_path(domain, which), device=device)
        real_f = encode_paths(encoder, real_paths, size, device)
        syn_f = encode_paths(encoder, syn_paths, size, device)
        m = quality_metrics(real_f, real_labels, syn_f, syn_labels, threshold)
        if which == "gold":
            out.update({k: v for k, v in m.items() if k != "mean_reward_sem"})
        else:
            out.update({"identity_accuracy_reward": m["identity_accuracy"], "mean_reward_sem": m["mean_reward_sem"]})
    return out


def quality_metrics(real_f: torch.Tensor, real_labels: list, syn_f: torch.Tensor, syn_labels: list,
                    threshold: float) -> dict:
    from rgsyn.metrics.generation import density_coverage, frechet_distance, memorisation, real_reference
    from rgsyn.metrics.identity import identity_agreement, identity_prototypes

    k = max(1, min(5, real_f.shape[0] - 1))
    dc = density_coverage(real_f.numpy(), syn_f.numpy(), k=k)
    mem = memorisation(real_f.numpy(), syn_f.numpy(), threshold)
    ref = real_reference(real_f.numpy(), threshold)
    keys = sorted({str(x) for x in real_labels})
    index = {key: i for i, key in enumerate(keys)}
    ry = torch.tensor([index[str(x)] for x in real_labels])
    sy = torch.tensor([index[str(x)] for x in syn_labels])
    protos = identity_prototypes([real_f[ry == i] for i in range(len(keys))])
    r_sem, hit = identity_agreement(syn_f, sy, protos)   # PAPER.md R_sem, nearest-prototype hits
    return {"frechet": frechet_distance(real_f.numpy(), syn_f.numpy()), "density": dc["density"],
            "coverage": dc["coverage"], "density_coverage_k": k,
            "nn_sim_mean": mem["nn_sim_mean"], "nn_sim_max": mem["nn_sim_max"],
            "nn_sim_share_above": mem["share_above"], "nn_threshold": mem["threshold"],
            "real_nn_sim_mean": ref["nn_sim_mean"], "real_nn_share_above": ref["share_above"],
            "mean_reward_sem": float(r_sem.mean()),
            "identity_accuracy": float(hit.float().mean())}
