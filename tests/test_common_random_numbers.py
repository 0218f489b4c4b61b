"""Common random numbers: for one seed every variant starts from the same weights and sees the
same real batches, augmented the same way; synthetic candidates meet their batch's identities."""
import dataclasses

import torch

from rgsyn.config import Params, SelectionParams
from rgsyn.downstream.datasets import LabelledImages
from rgsyn.downstream.loop import CandidateDraws


def _set(n_ids: int, per_id: int, shape, seed: int) -> LabelledImages:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_ids).repeat_interleave(per_id)
    return LabelledImages(images=torch.randint(0, 256, (len(labels), *shape), generator=g, dtype=torch.uint8),
                          labels=labels)


def _reid_runs(seed: int):
    from rgsyn.downstream.reid import train_reid
    from rgsyn.selection import build_selector

    p = dataclasses.replace(Params().reid, backbone="osnet_x0_25", height=32, width=16, epochs=2, steps=0, P=4, K=2,
                            warmup_epochs=0, syn_per_batch=4)
    real, syn = _set(8, 3, (3, 32, 16), 0), _set(8, 2, (3, 32, 16), 1)
    out = {"real": train_reid(real, 8, p, seed, progress=False)[1],
           "syn": train_reid(real, 8, dataclasses.replace(p, syn_draw="batch_ids"), seed, synthetic=syn,
                             progress=False)[1],
           "syn_uniform": train_reid(real, 8, dataclasses.replace(p, syn_draw="uniform"), seed, synthetic=syn,
                                     progress=False)[1],
           "lookahead": train_reid(real, 8, p, seed, synthetic=syn, progress=False,
                                   selector=build_selector("lookahead", SelectionParams(), seed))[1]}
    return out


def test_reid_variants_of_one_seed_share_initial_weights_and_real_batches():
    runs = _reid_runs(3)
    assert runs["syn"]["n_synthetic_used"] > 0 and runs["lookahead"]["n_synthetic_used"] > 0
    for key in ("init_sha256", "real_stream_sha256"):
        assert len({r[key] for r in runs.values()}) == 1, key
    # and the losses differ, so the synthetic data did change the training
    assert runs["syn"]["history"][-1]["loss"] != runs["real"]["history"][-1]["loss"]
    other = _reid_runs(4)["real"]
    assert other["init_sha256"] != runs["real"]["init_sha256"]
    assert other["real_stream_sha256"] != runs["real"]["real_stream_sha256"]


def test_face_variants_of_one_seed_share_initial_weights_and_real_batches():
    from rgsyn.downstream.face import train_face
    from rgsyn.selection import build_selector

    p = dataclasses.replace(Params().face, size=16, epochs=2, steps=0, batch_size=8, embedding_dim=16, syn_per_batch=4)
    real, syn = _set(6, 4, (3, 16, 16), 0), _set(6, 2, (3, 16, 16), 1)
    a = train_face(real, 6, p, 2, progress=False)[1]
    b = train_face(real, 6, p, 2, synthetic=syn, progress=False)[1]
    c = train_face(real, 6, p, 2, synthetic=syn, progress=False,
                   selector=build_selector("random", SelectionParams(), 2))[1]
    assert b["n_synthetic_used"] > 0
    assert a["init_sha256"] == b["init_sha256"] == c["init_sha256"]
    assert a["real_stream_sha256"] == b["real_stream_sha256"] == c["real_stream_sha256"]


def test_candidates_are_drawn_from_the_batch_identities():
    labels = torch.arange(20).repeat_interleave(3)
    g = torch.Generator().manual_seed(0)
    batch = torch.tensor([2, 2, 5, 5, 11, 11, 19, 19])
    idx = CandidateDraws(labels, "batch_ids").draw(batch, 64, g)
    drawn = labels[idx]
    assert set(drawn.tolist()) == {2, 5, 11, 19}      # all four identities, nothing else
    uni = labels[CandidateDraws(labels, "uniform").draw(batch, 64, g)]
    assert len(set(uni.tolist()) - {2, 5, 11, 19}) > 5
    # a batch whose identities have no synthetic images falls back to uniform draws
    few = CandidateDraws(torch.tensor([0, 0, 1, 1]), "batch_ids").draw(torch.tensor([7, 8]), 8, g)
    assert few.min() >= 0 and few.max() <= 3
