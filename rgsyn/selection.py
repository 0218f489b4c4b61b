"""Dynamic sample selection for downstream training (PAPER.md, step 5).

The downstream training loop draws candidate synthetic samples each step and asks a `Selector`
which of them to train on:

    selector = build_selector(variant.selection, params.selection, seed)
    keep = selector.select(net, (x_real, y_real), (x_syn, y_syn), step)   # LongTensor of indices

`selector.state_dict()` / `load_state_dict()` carry its random state through a training checkpoint.

Kinds:
- ``none``: keep every candidate.
- ``random``: keep ``round(fraction * n)`` candidates uniformly at random (seeded); the ablation.
- ``lookahead``: make a *virtual* SGD step of the recognition model on the current real batch,
  ``w' = w - virtual_lr * grad_w l_id(w, real)``, and score every candidate by the change of its
  identity loss ``dl = l_id(w', x) - l_id(w, x)``. The ``round(fraction * n)`` candidates with the
  smallest ``dl`` (the samples the real-data update helps most) are kept.

``l_id`` is the per-sample cross-entropy of the logits ``net(images, labels)`` (for faces these are
the CosFace margin logits, so the margin is part of the loss, as in training).

The virtual step never touches the real weights or buffers: it goes through
``torch.func.functional_call`` with detached parameter tensors and *cloned* buffers (so BatchNorm
running statistics are not updated), and ``torch.autograd.grad`` (so no ``.grad`` is written).
Dropout draws the same masks for the ``w`` and ``w'`` forwards (the RNG state is replayed), and
the caller's RNG stream is left as it was.

To first order ``dl ~= -virtual_lr * <grad l_id(w, real), grad l_id(w, x)>``, so the ranking does not
depend on ``virtual_lr`` as long as the step is small; ``virtual_lr`` only needs to be small enough
for the first-order picture to hold and large enough to stay above float noise.

Which parameters the virtual step covers (``virtual_params``):
- ``head``: only the classifier head (the last parameterised module the forward calls). One
  backbone pass over the real (virtual-step) images and the candidates together, as in a mixed
  training batch, gives the head inputs; the virtual step and ``w'`` only re-run the head.
- ``head_last_block``: the head plus the last block before it (e.g. ``layer4.2`` of a ResNet,
  ``blocks.11`` of a ViT, the ``fc`` embedding of OSNet); two full forwards of the candidates.
- ``all``: every parameter; two full forwards plus a full backward on the real batch.
The default is ``head``: in ``benchmarks/bench_selection_overhead.py`` (toy OSNet ReID step, CPU
seconds per step over no selection) head costs about +11%, head_last_block +49%, all +64%; the
head-only step also keeps the scoring a first-order "does the real update agree with this
sample's gradient at the classifier", which is where identity evidence is read out. A model may name its head module explicitly with an attribute
``selection_head = "<module name>"``.

``virtual_batch``: the virtual step uses an evenly strided subset of this many real images (0 = the
whole real batch); with P x K sampling a stride of K keeps one image per identity. The head
gradient of 16 images is a fine direction estimate and saves most of the real-batch forward.

``rescore_every``: the lookahead direction ``w' - w`` is recomputed on the real batch every
``rescore_every`` steps and reused in between (applied to the current weights), which saves the
real-batch forward/backward; the candidates, which are new every step, are always scored.
"""
from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

KINDS = ("none", "random", "lookahead")


def n_keep(fraction: float, n: int) -> int:
    """How many of ``n`` candidates a random/lookahead selector keeps (at least one if any)."""
    if n <= 0:
        return 0
    return max(1, min(n, round(fraction * n)))


class Selector:
    """Base class: ``select`` returns indices into the candidates to train on this step."""

    kind = "none"

    def __init__(self, params: Any = None, seed: int = 0):
        self.params = params
        self.seed = seed
        self.last_stats: dict[str, float] = {}

    def n_candidates(self, syn_per_batch: int) -> int:
        """How many candidates the training loop should draw per step."""
        return syn_per_batch

    def select(self, net: nn.Module, real_batch: tuple[Tensor, Tensor],
               candidates: tuple[Tensor, Tensor], step: int) -> Tensor:
        n = candidates[0].shape[0]
        return torch.arange(n, device=candidates[0].device)

    def state_dict(self) -> dict[str, Tensor]:
        """What a resumed run needs to continue the same selections (the training checkpoint holds it)."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__}.load_state_dict: unexpected keys {sorted(state)}")


class NoSelection(Selector):
    kind = "none"


class RandomSelection(Selector):
    """Keep ``round(fraction * n)`` candidates uniformly at random, from a seeded generator."""

    kind = "random"

    def __init__(self, params: Any, seed: int = 0):
        super().__init__(params, seed)
        self._gen = torch.Generator().manual_seed(int(seed))

    def n_candidates(self, syn_per_batch: int) -> int:
        return syn_per_batch * self.params.candidate_multiplier

    def select(self, net, real_batch, candidates, step):
        n = candidates[0].shape[0]
        k = n_keep(self.params.fraction, n)
        idx = torch.randperm(n, generator=self._gen)[:k].sort().values
        return idx.to(candidates[0].device)

    def state_dict(self) -> dict[str, Tensor]:
        return {"rng": self._gen.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if set(state) != {"rng"}:
            raise ValueError(f"RandomSelection.load_state_dict: expected the key 'rng', got {sorted(state)}")
        self._gen.set_state(state["rng"])


# ---------------------------------------------------------------------- lookahead internals
def _leaf_modules_with_params(net: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in net.named_modules() if any(True for _ in m.parameters(recurse=False))}


def _trace_calls(net: nn.Module, run) -> list[str]:
    """Names of the parameterised modules in the order the forward calls them."""
    order: list[str] = []
    handles = []
    for name, m in _leaf_modules_with_params(net).items():
        handles.append(m.register_forward_pre_hook(lambda mod, args, _n=name: order.append(_n)))
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return order


def _block_of(net: nn.Module, leaf: str) -> str:
    """The block a parameterised module belongs to: the outermost indexed element of a
    Sequential/ModuleList on its path (``layer4.2.bn3 -> layer4.2``); if that container is a flat
    sequence of plain layers (OSNet's ``fc``), the container itself; otherwise the leaf's parent."""
    parts = leaf.split(".")
    modules = dict(net.named_modules())
    for i, part in enumerate(parts):
        if part.isdigit() and i > 0:
            container = ".".join(parts[:i])
            if all(len(list(c.children())) == 0 for c in modules[container].children()):
                return container
            return ".".join(parts[:i + 1])
    return ".".join(parts[:-1]) if len(parts) > 1 else leaf


def _under(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


class LookaheadSelection(Selector):
    """Keep the candidates whose identity loss a virtual real-data update lowers most."""

    kind = "lookahead"

    def __init__(self, params: Any, seed: int = 0):
        super().__init__(params, seed)
        self.virtual_params = params.virtual_params
        self._plan: dict[str, Any] | None = None     # head name, selected parameter names
        self._delta: dict[str, Tensor] | None = None  # cached w' - w
        self._delta_step = -1

    def n_candidates(self, syn_per_batch: int) -> int:
        return syn_per_batch * self.params.candidate_multiplier

    def virtual_rows(self, n_real: int) -> int:
        """Real images in the virtual step for a real batch of `n_real`: `virtual_batch`, or all when
        that is 0 or not smaller."""
        vb = self.params.virtual_batch
        return vb if 0 < vb < n_real else n_real

    # -- which parameters the virtual step covers
    def _make_plan(self, net: nn.Module, x: Tensor, y: Tensor, state: dict[str, Tensor]) -> dict[str, Any]:
        head = getattr(net, "selection_head", None)
        order: list[str] = []
        head_io: dict[str, Any] = {}
        if head is None or self.virtual_params != "all":
            with torch.no_grad():
                order = _trace_calls(net, lambda: head_io.setdefault("out", functional_call(net, state, (x, y))))
            if head is None:
                if not order:
                    raise ValueError("lookahead selection: the model's forward calls no module with parameters")
                head = order[-1]
        names = [n for n, _ in net.named_parameters()]
        if self.virtual_params == "all":
            prefixes = [""]
        elif self.virtual_params == "head":
            prefixes = [head]
        else:  # head_last_block
            before = [m for m in order if not _under(m, head)]
            prefixes = [head] + ([_block_of(net, before[-1])] if before else [])
        selected = [n for n in names if any(_under(n, p) for p in prefixes)]
        if not selected:
            raise ValueError(f"lookahead selection: no trainable parameters under {prefixes}")
        # Fast path for `head`: the head's output must be the model's output, so that re-running only
        # the head under w' gives the model's logits under w'.
        fast = False
        if self.virtual_params == "head":
            modules = dict(net.named_modules())
            cap = self._capture_head_input(net, modules[head], state, x, y)
            with torch.no_grad():
                out_head = functional_call(modules[head], self._sub(state, head), cap["args"], cap["kwargs"])
            fast = (isinstance(out_head, Tensor) and out_head.shape == cap["out"].shape
                    and torch.allclose(out_head, cap["out"], atol=1e-5, rtol=1e-4))
        return {"head": head, "selected": selected, "fast": fast}

    @staticmethod
    def _sub(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        n = len(prefix) + 1
        return {k[n:]: v for k, v in state.items() if k.startswith(prefix + ".")}

    @staticmethod
    def _capture_head_input(net, head_mod, state, x, y) -> dict[str, Any]:
        cap: dict[str, Any] = {}

        def hook(mod, args, kwargs):
            cap["args"], cap["kwargs"] = args, kwargs

        h = head_mod.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            with torch.no_grad():
                cap["out"] = functional_call(net, state, (x, y))
        finally:
            h.remove()
        return cap

    @staticmethod
    def _state(net: nn.Module) -> dict[str, Tensor]:
        # Detached parameters (never written to) and cloned buffers (BatchNorm updates its running
        # statistics in place during a train-mode forward; the clones absorb that).
        state = {n: p.detach() for n, p in net.named_parameters()}
        state.update({n: b.clone() for n, b in net.named_buffers()})
        return state

    # -- the virtual update
    def _virtual_delta(self, net, x, y, state) -> dict[str, Tensor]:
        plan = self._plan
        sel = {n: state[n].clone().requires_grad_(True) for n in plan["selected"]}
        with torch.enable_grad():
            if plan["fast"]:
                modules = dict(net.named_modules())
                cap = self._capture_head_input(net, modules[plan["head"]], state, x, y)
                head_state = self._sub({**state, **sel}, plan["head"])
                logits = functional_call(modules[plan["head"]], head_state, cap["args"], cap["kwargs"])
            else:
                logits = functional_call(net, {**state, **sel}, (x, y))
            loss = F.cross_entropy(logits.float(), y)
            grads = torch.autograd.grad(loss, list(sel.values()), allow_unused=True)
        lr = self.params.virtual_lr
        return {n: (-lr * g) if g is not None else torch.zeros_like(sel[n])
                for n, g in zip(sel, grads)}

    def _candidate_losses(self, net, x, y, state, delta) -> tuple[Tensor, Tensor]:
        plan = self._plan
        shifted = {**state, **{n: state[n] + d for n, d in delta.items()}}
        with torch.no_grad():
            if plan["fast"]:
                modules = dict(net.named_modules())
                cap = self._capture_head_input(net, modules[plan["head"]], state, x, y)
                logits_w = cap["out"]
                logits_w2 = functional_call(modules[plan["head"]], self._sub(shifted, plan["head"]),
                                            cap["args"], cap["kwargs"])
            else:
                rng = torch.get_rng_state()
                cuda_rng = torch.cuda.get_rng_state_all() if x.is_cuda else None
                logits_w = functional_call(net, state, (x, y))
                torch.set_rng_state(rng)
                if cuda_rng is not None:
                    torch.cuda.set_rng_state_all(cuda_rng)
                # buffers again from the real ones, so both forwards see identical statistics
                logits_w2 = functional_call(net, {**shifted, **{n: b.clone() for n, b in net.named_buffers()}},
                                            (x, y))
            l_w = F.cross_entropy(logits_w.float(), y, reduction="none")
            l_w2 = F.cross_entropy(logits_w2.float(), y, reduction="none")
        return l_w, l_w2

    def _fused_scores(self, net, x_r, y_r, x_c, y_c, state, step) -> Tensor:
        """Head-only fast path: ONE backbone pass over real + candidates (as in a mixed training
        batch), then the virtual step on the real rows' head inputs and the candidate losses under
        w and w' from the head alone. Saves a second backbone call (per-call overhead dominates
        small CPU batches)."""
        head_name = self._plan["head"]
        head = dict(net.named_modules())[head_name]
        n_r, n = x_r.shape[0], x_r.shape[0] + x_c.shape[0]
        cap = self._capture_head_input(net, head, state, torch.cat([x_r, x_c]), torch.cat([y_r, y_c]))

        def part(obj, sl):
            if isinstance(obj, Tensor) and obj.dim() > 0 and obj.shape[0] == n:
                return obj[sl]
            if isinstance(obj, (tuple, list)):
                return type(obj)(part(o, sl) for o in obj)
            if isinstance(obj, dict):
                return {k: part(v, sl) for k, v in obj.items()}
            return obj

        real, cand = slice(0, n_r), slice(n_r, n)
        sel = {k: state[k].clone().requires_grad_(True) for k in self._plan["selected"]}
        with torch.enable_grad():
            logits = functional_call(head, self._sub({**state, **sel}, head_name),
                                     part(cap["args"], real), part(cap["kwargs"], real))
            loss = F.cross_entropy(logits.float(), y_r)
            grads = torch.autograd.grad(loss, list(sel.values()), allow_unused=True)
        lr = self.params.virtual_lr
        self._delta = {k: (-lr * g) if g is not None else torch.zeros_like(sel[k]) for k, g in zip(sel, grads)}
        self._delta_step = step
        shifted = {**state, **{k: state[k] + d for k, d in self._delta.items()}}
        with torch.no_grad():
            logits_w2 = functional_call(head, self._sub(shifted, head_name), part(cap["args"], cand),
                                        part(cap["kwargs"], cand))
            l_w = F.cross_entropy(cap["out"][cand].float(), y_c, reduction="none")
            l_w2 = F.cross_entropy(logits_w2.float(), y_c, reduction="none")
        return l_w2 - l_w

    def scores(self, net: nn.Module, real_batch: tuple[Tensor, Tensor],
               candidates: tuple[Tensor, Tensor], step: int) -> Tensor:
        """``dl = l_id(w', x) - l_id(w, x)`` for every candidate (lower = the update helps it more)."""
        x_r, y_r = real_batch
        x_c, y_c = candidates
        devices = [x_r.device.index or 0] if x_r.is_cuda else []
        with torch.random.fork_rng(devices=devices):  # leave the caller's RNG stream untouched
            state = self._state(net)
            if self._plan is None:
                self._plan = self._make_plan(net, x_r, y_r, self._state(net))
            every = self.params.rescore_every
            refresh = self._delta is None or step - self._delta_step >= every or step < self._delta_step
            if refresh:
                vb = self.virtual_rows(x_r.shape[0])
                if vb < x_r.shape[0]:
                    # an evenly strided subset: a P x K batch keeps one image of (almost) every identity
                    idx = torch.arange(0, x_r.shape[0], x_r.shape[0] / vb).long()[:vb].to(x_r.device)
                    x_r, y_r = x_r[idx], y_r[idx]
            if refresh and self._plan["fast"]:
                return self._fused_scores(net, x_r, y_r, x_c, y_c, state, step)
            if refresh:
                self._delta = self._virtual_delta(net, x_r, y_r, state)
                self._delta_step = step
            l_w, l_w2 = self._candidate_losses(net, x_c, y_c, self._state(net), self._delta)
        return l_w2 - l_w

    def select(self, net, real_batch, candidates, step):
        t0 = time.perf_counter()
        dl = self.scores(net, real_batch, candidates, step)
        k = n_keep(self.params.fraction, dl.shape[0])
        order = torch.argsort(dl, stable=True)
        keep = order[:k]
        dropped = order[k:]
        self.last_stats = {
            "select_dl_kept": float(dl[keep].mean()) if k else 0.0,
            "select_dl_dropped": float(dl[dropped].mean()) if dropped.numel() else 0.0,
            "select_seconds": time.perf_counter() - t0,
        }
        return keep.sort().values


def build_selector(kind: str, selection_params: Any, seed: int = 0) -> Selector:
    """The selector of a variant: ``kind`` is ``Variant.selection`` (none | random | lookahead)."""
    if kind == "none":
        return NoSelection(selection_params, seed)
    if kind == "random":
        return RandomSelection(selection_params, seed)
    if kind == "lookahead":
        return LookaheadSelection(selection_params, seed)
    from rgsyn.errors import ConfigError

    raise ConfigError(f"selection: unknown kind {kind!r}; choose one of {list(KINDS)}")
