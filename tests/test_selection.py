"""Dynamic sample selection: lookahead keeps what a real update helps, drops what it hurts."""
import pytest
import torch
from torch import nn

from rgsyn.config import SelectionParams
from rgsyn.errors import ConfigError
from rgsyn.selection import LookaheadSelection, build_selector, n_keep


class TinyNet(nn.Module):
    """backbone (Linear + BatchNorm + Dropout) -> block -> classifier; net(x, y) -> logits."""

    def __init__(self, d=6, n_cls=2):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Linear(d, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2))
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(8, 8), nn.ReLU()) for _ in range(2)])
        self.classifier = nn.Linear(8, n_cls)

    def forward(self, x, y=None):
        h = self.stem(x)
        for b in self.blocks:
            h = h + b(h)
        return self.classifier(h)


def _data(n_real=16, d=6, seed=1, n_cls=2):
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(n_cls, d, generator=g) * 3
    y = torch.zeros(n_real, dtype=torch.long)    # the real batch is all class 0
    x = protos[y] + 0.5 * torch.randn(n_real, d, generator=g)
    return protos, x, y


def _candidates(protos, g):
    # Two classes; the real batch is class 0. "good" candidates look like class 0 and are labelled 0;
    # "bad" ones are the same images labelled 1. With two classes the logit gradient of a flipped label is exactly
    # anti-parallel to the correct one at the same input, so to first order the real update lowers
    # the loss of one exactly when it raises the other's; the good ones are the ones it lowers.
    xs, ys, good = [], [], []
    for _ in range(4):
        x = protos[0] + 0.5 * torch.randn(protos.shape[1], generator=g)
        xs += [x, x]
        ys += [0, 1]
        good += [True, False]
    return torch.stack(xs), torch.tensor(ys), torch.tensor(good)


@pytest.mark.parametrize("virtual_params", ["head", "head_last_block", "all"])
def test_lookahead_keeps_helped_drops_hurt_and_leaves_weights(virtual_params):
    net = TinyNet().train()
    protos, x_r, y_r = _data()
    xc, yc, good = _candidates(protos, torch.Generator().manual_seed(2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng_before = torch.get_rng_state()
    sel = build_selector("lookahead", SelectionParams(fraction=0.5, virtual_params=virtual_params,
                                                      virtual_lr=0.05), seed=0)
    dl = sel.scores(net, (x_r, y_r), (xc, yc), step=0)
    assert (dl[good] < 0).all(), dl
    assert (dl[~good] > 0).all(), dl
    keep = sel.select(net, (x_r, y_r), (xc, yc), step=1)
    assert keep.tolist() == torch.nonzero(good).flatten().tolist()
    # the real weights and buffers (BatchNorm running stats) are untouched, no .grad written,
    # and the caller's RNG stream is where it was
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in net.parameters())
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert sel.last_stats["select_dl_kept"] < sel.last_stats["select_dl_dropped"]


def test_lookahead_matches_explicit_update():
    """dl equals the loss change after a real SGD step on a copy of the model (head only)."""
    import copy

    net = TinyNet().eval()
    protos, x_r, y_r = _data()
    xc, yc, _ = _candidates(protos, torch.Generator().manual_seed(3))
    sel = LookaheadSelection(SelectionParams(virtual_params="head", virtual_lr=0.3))
    dl = sel.scores(net, (x_r, y_r), (xc, yc), step=0)
    assert sel._plan["head"] == "classifier" and sel._plan["fast"]
    ref = copy.deepcopy(net)
    loss = nn.functional.cross_entropy(ref(x_r), y_r)
    loss.backward()
    with torch.no_grad():
        l0 = nn.functional.cross_entropy(ref(xc), yc, reduction="none")
        for p in ref.classifier.parameters():
            p -= 0.3 * p.grad
        l1 = nn.functional.cross_entropy(ref(xc), yc, reduction="none")
    torch.testing.assert_close(dl, l1 - l0, atol=1e-5, rtol=1e-4)


def test_head_last_block_covers_head_and_last_block():
    net = TinyNet().train()
    _, x_r, y_r = _data()
    sel = LookaheadSelection(SelectionParams(virtual_params="head_last_block"))
    sel.scores(net, (x_r, y_r), (x_r[:4], y_r[:4]), step=0)
    assert sorted(sel._plan["selected"]) == ["blocks.1.0.bias", "blocks.1.0.weight",
                                             "classifier.bias", "classifier.weight"]


def test_rescore_every_reuses_the_direction():
    net = TinyNet().eval()
    protos, x_r, y_r = _data()
    xc, yc, _ = _candidates(protos, torch.Generator().manual_seed(2))
    sel = LookaheadSelection(SelectionParams(virtual_params="all", rescore_every=3))
    sel.scores(net, (x_r, y_r), (xc, yc), step=0)
    d0 = sel._delta
    sel.scores(net, (x_r[:5], y_r[:5]), (xc, yc), step=2)
    assert sel._delta is d0
    sel.scores(net, (x_r[:5], y_r[:5]), (xc, yc), step=3)
    assert sel._delta is not d0


def test_random_and_none():
    p = SelectionParams(fraction=0.25, candidate_multiplier=4)
    net = TinyNet()
    x = torch.randn(20, 6)
    y = torch.zeros(20, dtype=torch.long)
    none = build_selector("none", p, 0)
    assert none.select(net, (x, y), (x, y), 0).tolist() == list(range(20))
    assert none.n_candidates(8) == 8
    r1, r2 = build_selector("random", p, 7), build_selector("random", p, 7)
    k1 = r1.select(net, (x, y), (x, y), 0)
    assert k1.tolist() == r2.select(net, (x, y), (x, y), 0).tolist()
    assert len(k1) == 5 and len(set(k1.tolist())) == 5
    assert r1.n_candidates(8) == 32
    assert n_keep(0.5, 3) == 2 and n_keep(0.01, 10) == 1 and n_keep(1.0, 4) == 4
    with pytest.raises(ConfigError, match="unknown kind"):
        build_selector("greedy", p, 0)


def test_state_dict_resumes_the_same_selections():
    p = SelectionParams(fraction=0.25, candidate_multiplier=4)
    net, x, y = TinyNet(), torch.randn(20, 6), torch.zeros(20, dtype=torch.long)
    run = build_selector("random", p, 3)
    run.select(net, (x, y), (x, y), 0)
    state = run.state_dict()
    later = [run.select(net, (x, y), (x, y), s).tolist() for s in (1, 2)]
    resumed = build_selector("random", p, 3)   # a fresh process: first draws differ from `later`
    resumed.load_state_dict(state)
    assert [resumed.select(net, (x, y), (x, y), s).tolist() for s in (1, 2)] == later
    fresh = build_selector("random", p, 3)
    assert fresh.select(net, (x, y), (x, y), 1).tolist() != later[0]
    none = build_selector("none", p, 0)
    assert none.state_dict() == {}
    none.load_state_dict({})
    with pytest.raises(ValueError, match="unexpected keys"):
        none.load_state_dict(state)
    with pytest.raises(ValueError, match="expected the key 'rng'"):
        resumed.load_state_dict({})


def test_virtual_batch_uses_a_strided_subset_of_the_real_batch():
    net = TinyNet().eval()
    protos, x_r, y_r = _data()
    xc, yc, _ = _candidates(protos, torch.Generator().manual_seed(2))
    sub = LookaheadSelection(SelectionParams(virtual_params="head", virtual_batch=4))
    full = LookaheadSelection(SelectionParams(virtual_params="head", virtual_batch=0))
    torch.testing.assert_close(sub.scores(net, (x_r, y_r), (xc, yc), 0),
                               full.scores(net, (x_r[::4], y_r[::4]), (xc, yc), 0))
    fresh = LookaheadSelection(SelectionParams(virtual_params="head", virtual_batch=0))
    assert not torch.allclose(fresh.scores(net, (x_r, y_r), (xc, yc), 0),
                              full.scores(net, (x_r[::4], y_r[::4]), (xc, yc), 0))
