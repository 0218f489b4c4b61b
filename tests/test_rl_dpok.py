"""The DPOK loss: on-policy zero gradient, clipping on the specified side, KL to the reference."""
import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from rgsyn.generator.lora import adapter_disabled
from rgsyn.rl.dpok import clipped_policy_loss, dpok_loss, gaussian_kl


def _grad(logp_new, logp_old, adv, c=0.2):
    lp = logp_new.clone().requires_grad_(True)
    loss, stats = clipped_policy_loss(lp, logp_old, adv, c)
    loss.backward()
    return lp.grad, stats


def test_zero_gradient_at_ratio_one_with_zero_advantage():
    lp = torch.tensor([-3.0, -1.0, 2.0])
    g, stats = _grad(lp, lp.clone(), torch.zeros(3))
    assert torch.equal(g, torch.zeros(3))
    assert stats["ratio_mean"] == 1.0 and stats["clip_frac"] == 0.0
    # on-policy with a non-zero advantage the gradient is -A / n (the plain policy gradient)
    g, _ = _grad(lp, lp.clone(), torch.tensor([1.0, -2.0, 0.5]))
    torch.testing.assert_close(g, torch.tensor([-1.0, 2.0, -0.5]) / 3)


def test_clipping_zeroes_gradient_on_the_specified_side():
    c = 0.2
    old = torch.zeros(4)
    up, down = torch.log(torch.tensor(1.5)), torch.log(torch.tensor(0.5))
    new = torch.stack([up, up, down, down])
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    g, stats = _grad(new, old, adv, c)
    # A > 0, ratio > 1 + c: clipped, no gradient;  A < 0, ratio < 1 - c: clipped, no gradient
    assert g[0] == 0 and g[3] == 0
    # the other side keeps the unclipped (pessimistic) term: d(-A r)/d logp = -A r / n
    torch.testing.assert_close(g[1], torch.tensor(1.5 / 4))
    torch.testing.assert_close(g[2], torch.tensor(-0.5 / 4))
    assert stats["clip_frac"] == 1.0
    assert abs(stats["ratio_max"] - 1.5) < 1e-6 and abs(stats["ratio_min"] - 0.5) < 1e-6
    # inside the clip region the gradient is not clipped
    g, stats = _grad(torch.log(torch.tensor([1.1])), torch.zeros(1), torch.ones(1), c)
    torch.testing.assert_close(g, torch.tensor([-1.1]))
    assert stats["clip_frac"] == 0.0


def test_gaussian_kl_closed_form():
    mp, mq = torch.zeros(2, 3), torch.ones(2, 3)
    # same std: ||mp - mq||^2 / (2 s^2) = 3 / (2 * 0.25) = 6
    torch.testing.assert_close(gaussian_kl(mp, 0.5, mq, 0.5), torch.tensor([6.0, 6.0]))
    # different std, zero mean gap: per dim log(sq/sp) + sp^2/(2 sq^2) - 1/2
    kl = gaussian_kl(mp, torch.tensor(1.0), mp, torch.tensor(2.0))
    per = torch.log(torch.tensor(2.0)) + 1 / 8 - 0.5
    torch.testing.assert_close(kl, torch.full((2,), 3 * per))
    assert torch.equal(gaussian_kl(mq, 0.3, mq.clone(), 0.3), torch.zeros(2))


class Policy(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.to_q = nn.Linear(4, 4)
        self.out = nn.Linear(4, 4)

    def forward(self, x):
        return self.out(torch.tanh(self.to_q(x)))


def test_kl_to_adapter_disabled_reference():
    net = Policy()
    inject_adapter_in_model(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q"]), net)
    x = torch.randn(3, 4)
    with torch.no_grad(), adapter_disabled(net):
        ref = net(x)
    # LoRA B = 0 at init: the policy equals the reference, KL = 0
    kl0 = gaussian_kl(net(x), 0.1, ref, 0.1)
    assert torch.equal(kl0, torch.zeros(3))
    with torch.no_grad():
        net.to_q.lora_B["default"].weight.fill_(0.3)
    mean = net(x)
    kl = gaussian_kl(mean, 0.1, ref, 0.1)
    assert (kl > 0).all()
    # with the adapter disabled the model is the reference again: KL = 0 exactly
    with torch.no_grad(), adapter_disabled(net):
        torch.testing.assert_close(gaussian_kl(net(x), 0.1, ref, 0.1), torch.zeros(3))
    # the context restores the adapter and its trainability; the KL gradient reaches LoRA only
    lora_b = net.to_q.lora_B["default"].weight
    assert lora_b.requires_grad and not net.to_q.base_layer.weight.requires_grad
    lp = torch.zeros(3, requires_grad=True)
    loss, stats = dpok_loss(lp, lp.detach(), torch.zeros(3), 0.2, kl=gaussian_kl(net(x), 0.1, ref, 0.1),
                            kl_coef=0.5)
    loss.backward()
    assert lora_b.grad is not None and lora_b.grad.abs().sum() > 0
    assert stats["kl"] > 0 and abs(float(loss.detach()) - 0.5 * stats["kl"]) < 1e-5


def test_well_conditioned_steps_leave_out_the_tiny_sigma_steps():
    from rgsyn.generator.architecture import build_scheduler
    from rgsyn.generator.sampler import PolicySampler
    from rgsyn.rl.dpok import well_conditioned_steps

    stub = torch.nn.Linear(1, 1)
    for steps, left_out in ((10, [8, 9]), (4, [2, 3]), (50, [48, 49])):
        s = PolicySampler(stub, build_scheduler(1000), None, steps, 1.0, 2.0)
        kept = well_conditioned_steps(s.sigmas, 0.1)
        assert sorted(set(range(steps)) - set(kept)) == left_out, steps
        assert all(float(s.sigmas[i]) < 0.1 * float(s.sigmas.mean()) for i in left_out)
    assert well_conditioned_steps(torch.tensor([0.5, 0.01, 0.4]), 0.0) == [0, 1, 2]
    assert well_conditioned_steps(torch.tensor([0.5, 0.01, 0.4]), 0.1) == [0, 2]
