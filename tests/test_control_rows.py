"""The control rows and the run length in steps: the negative control's labels are a derangement, the
compute-matched control draws real images into the synthetic slots, the positive control's rows
train on extra seeds, and `steps` fixes the run length whatever the size of the real split."""
import dataclasses

import pytest
import torch

from rgsyn import config
from rgsyn.config import ConfigError, Params
from rgsyn.downstream import control_sets
from rgsyn.downstream.datasets import LabelledImages
from rgsyn.downstream.face import train_face
from rgsyn.downstream.reid import ReidTask


def _set(labels, shape=(3, 16, 16), seed=0) -> LabelledImages:
    g = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(labels)
    return LabelledImages(images=torch.randint(0, 256, (len(labels), *shape), generator=g, dtype=torch.uint8),
                          labels=labels, pids=labels + 100)


@pytest.mark.parametrize("seed", range(6))
def test_shuffled_labels_are_a_derangement_of_the_identities(seed):
    syn = _set([0, 0, 3, 3, 3, 5, 7, 7])
    out = control_sets.shuffled_labels(syn, seed)
    assert torch.equal(out.images, syn.images)                       # pixels kept
    mapping = {}
    for a, b in zip(syn.labels.tolist(), out.labels.tolist()):
        assert mapping.setdefault(a, b) == b                          # one label per identity
    assert sorted(mapping.values()) == [0, 3, 5, 7]                   # a permutation of the identities
    assert all(a != b for a, b in mapping.items())                    # none keeps its own
    assert out.pids is None


def test_shuffled_labels_depend_on_the_seed_and_are_reproducible():
    syn = _set(list(range(10)))
    a, b = control_sets.shuffled_labels(syn, 0), control_sets.shuffled_labels(syn, 0)
    assert torch.equal(a.labels, b.labels)
    assert any(not torch.equal(a.labels, control_sets.shuffled_labels(syn, s).labels) for s in range(1, 4))


def test_shuffled_labels_need_two_identities():
    with pytest.raises(control_sets.DataError, match="at least 2 identities"):
        control_sets.shuffled_labels(_set([4, 4]), 0)


def test_real_plus_fills_the_synthetic_slots_with_real_draws():
    p = dataclasses.replace(Params().face, size=16, steps=3, batch_size=8, embedding_dim=16, syn_per_batch=4)
    real = _set([i // 4 for i in range(24)])
    plain = train_face(real, 6, p, 1, progress=False)[1]
    plus = train_face(real, 6, p, 1, synthetic=control_sets.real_draws(real), progress=False)[1]
    assert plus["n_synthetic_used"] == 3 * 4 and plain["n_synthetic_used"] == 0
    # same real stream and initial weights (common random numbers), other losses
    assert plus["real_stream_sha256"] == plain["real_stream_sha256"]
    assert plus["history"][-1]["loss"] != plain["history"][-1]["loss"]


def test_steps_fix_the_run_length_whatever_the_real_split():
    p = dataclasses.replace(Params().reid, P=4, K=2, epochs=4, warmup_epochs=1, steps=0)
    assert ReidTask(p).schedule(6) == (24, 6)                         # steps 0: epochs x batches per epoch
    fixed = ReidTask(dataclasses.replace(p, steps=40))
    assert fixed.schedule(6) == (40, 6) and fixed.schedule(2) == (40, 2)
    assert fixed.steps(16) == fixed.steps(800) == 40
    short = ReidTask(dataclasses.replace(p, steps=3))
    assert short.schedule(6) == (3, 3)                                # warm-up never outlasts the run
    face = dataclasses.replace(Params().face, size=16, steps=5, batch_size=8, embedding_dim=16, syn_per_batch=0)
    info = train_face(_set([i // 4 for i in range(16)]), 4, face, 0, progress=False)[1]
    assert info["steps"] == 5 and len(info["history"]) == 5         # 2 batches per epoch, 3 epochs run


def test_control_seeds_go_to_the_control_rows_only():
    p = config.from_dict({"seeds": [0, 1], "control_seeds": [5, 6]})
    assert p.seeds_of("real") == p.seeds_of("syn_oracle") == p.seeds_of("syn_shuffled") == [0, 1, 5, 6]
    assert p.seeds_of("ours") == p.seeds_of("real_plus") == p.seeds_of("real_re") == [0, 1]


@pytest.mark.parametrize("raw, fragment", [
    ({"seeds": [0, 1], "control_seeds": [1, 2]}, "control_seeds: value [1, 2] shares seeds with seeds [0, 1]"),
    ({"control_seeds": [3, 3]}, "control_seeds: value [3, 3] repeats a seed"),
    ({"syn_variants": {"x": {"synthetic": "real", "labels": "shuffled"}}}, "syn_variants.x: synthetic 'real'"),
    ({"syn_variants": {"x": {"synthetic": "oracle", "labels": "mixed"}}}, "syn_variants.x.labels: value 'mixed'"),
])
def test_bad_control_params_name_the_key(raw, fragment):
    with pytest.raises(ConfigError) as e:
        config.from_dict(raw)
    assert fragment in str(e.value)


def test_default_rows_include_the_controls():
    p = Params()
    assert (p.variant("syn_shuffled").synthetic, p.variant("syn_shuffled").labels) == ("oracle", "shuffled")
    assert p.variant("real_plus").synthetic == config.REAL_DRAWS
    paper = config.from_dict(config.profile_dict("paper"))
    assert "real_plus" in paper.syn_variants and "syn_shuffled" not in paper.syn_variants
    assert paper.control_seeds == []
