"""Switch MoE in PyTorch: the fast dispatch equals the loop reference; losses and capacity by hand."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from harness.config import ModelConfig  # noqa: E402
from tests.moe_reference import loop_switch_ffn  # noqa: E402
from workloads.moe_rules import expert_capacity, is_moe_layer  # noqa: E402
from workloads.torch.model import Transformer, training_loss  # noqa: E402
from workloads.torch.moe import SwitchFFN  # noqa: E402


def _ffn(d=8, f=16, experts=4, cf_train=1.25, cf_eval=2.0, seed=0, groups=1):
    torch.manual_seed(seed)
    m = ModelConfig(
        kind="moe",
        n_experts=experts,
        capacity_factor_train=cf_train,
        capacity_factor_eval=cf_eval,
        routing_groups=groups,
    )
    ffn = SwitchFFN(d, f, m)
    for p in ffn.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return ffn


def _compare(ffn, x_BTD, cf):
    x_fast = x_BTD.clone().requires_grad_(True)
    y_fast, stats = ffn(x_fast)
    fast_params = [ffn.router.weight, ffn.w_in_EDF, ffn.w_out_EFD]
    upstream = torch.randn_like(y_fast)
    grads_fast = torch.autograd.grad((y_fast * upstream).sum(), [x_fast, *fast_params])

    ref_params = [p.detach().clone().requires_grad_(True) for p in fast_params]
    x_ref = x_BTD.clone().requires_grad_(True)
    y_ref = loop_switch_ffn(x_ref.reshape(-1, x_ref.shape[-1]), *ref_params, cf).view_as(x_ref)
    grads_ref = torch.autograd.grad((y_ref * upstream).sum(), [x_ref, *ref_params])
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-5, atol=1e-6)
    for g_fast, g_ref in zip(grads_fast, grads_ref, strict=True):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-6)
    return stats


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_dispatch_matches_the_loop_in_outputs_and_gradients(seed):
    ffn = _ffn(seed=seed)
    x = torch.randn(3, 10, 8, generator=torch.Generator().manual_seed(seed))
    stats = _compare(ffn, x, cf=1.25)
    assert 0.0 <= stats["dropped_frac"].item() < 1.0


def test_capacity_overflow_drops_tokens_to_zero_and_matches_the_loop():
    ffn = _ffn(experts=4, cf_train=1.0)
    with torch.no_grad():  # a router that sends almost everything to expert 0
        ffn.router.weight.zero_()
        ffn.router.weight[0] = 5.0
    x = torch.rand(2, 16, 8) + 0.1  # positive inputs -> expert 0 wins for every token
    stats = _compare(ffn, x, cf=1.0)
    capacity = expert_capacity(32, 4, 1.0)  # 8 slots, 32 tokens want expert 0
    assert stats["dropped_frac"].item() == pytest.approx(1 - capacity / 32)
    y, _ = ffn(x)
    flat = y.reshape(32, 8)
    assert torch.count_nonzero(flat.abs().sum(-1)) == capacity  # dropped tokens get exactly zero
    assert torch.all(flat[capacity:] == 0) and torch.all(flat[:capacity].abs().sum(-1) > 0)


def test_eval_uses_the_eval_capacity_factor():
    ffn = _ffn(experts=4, cf_train=1.0, cf_eval=4.0)
    with torch.no_grad():
        ffn.router.weight.zero_()
        ffn.router.weight[0] = 5.0
    x = torch.rand(1, 16, 8) + 0.1
    ffn.train()
    assert ffn(x)[1]["dropped_frac"].item() == pytest.approx(0.75)  # capacity 4 of 16
    ffn.eval()
    assert ffn(x)[1]["dropped_frac"].item() == 0.0  # capacity 16 of 16


def test_aux_and_z_loss_by_hand():
    """Two experts, two tokens, router logits fixed by hand.

    logits: token0 = [ln 3, 0] -> p = [0.75, 0.25], routed to 0
            token1 = [0, ln 3] -> p = [0.25, 0.75], routed to 1
    f = [0.5, 0.5], P = [0.5, 0.5]; aux = 0.01 * 2 * (0.25 + 0.25) = 0.01
    logsumexp = ln 4 for both; z = 1e-3 * (ln 4)^2
    """
    ffn = _ffn(d=2, experts=2)
    with torch.no_grad():
        ffn.router.weight.copy_(torch.tensor([[math.log(3), 0.0], [0.0, math.log(3)]]))
    x = torch.eye(2).view(1, 2, 2)
    _, stats = ffn(x)
    assert stats["aux_loss"].item() == pytest.approx(0.01)
    assert stats["z_loss"].item() == pytest.approx(1e-3 * math.log(4) ** 2)
    assert stats["expert_load"].tolist() == pytest.approx([0.5, 0.5])

    # imbalance: both tokens to expert 0 -> f = [1, 0], P = [0.75, 0.25]; aux = 0.01*2*0.75
    with torch.no_grad():
        ffn.router.weight.copy_(torch.tensor([[math.log(3), math.log(3)], [0.0, 0.0]]))
    _, stats = ffn(x)
    assert stats["aux_loss"].item() == pytest.approx(0.015)


def test_router_runs_in_float32_under_bf16_autocast():
    ffn = _ffn()
    x = torch.randn(2, 4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expert, gate, probs, logits = ffn.route(x.view(-1, 8))
        y, _ = ffn(x)
    assert logits.dtype == torch.float32 and probs.dtype == torch.float32
    assert y.dtype == torch.float32  # the residual stream keeps its dtype


def test_jitter_only_in_training():
    ffn = _ffn()
    ffn.jitter = 0.5
    x = torch.randn(1, 6, 8)
    ffn.eval()
    assert torch.equal(ffn.route(x.view(-1, 8))[3], ffn.route(x.view(-1, 8))[3])
    ffn.train()
    assert not torch.equal(ffn.route(x.view(-1, 8))[3], ffn.route(x.view(-1, 8))[3])


def test_capacity_arithmetic():
    assert expert_capacity(32768, 8, 1.25) == 5120
    assert expert_capacity(10, 4, 1.25) == 4  # ceil(3.125)
    assert expert_capacity(3, 8, 1.0) == 1  # never zero slots
    assert [is_moe_layer(i, 2) for i in range(4)] == [False, True, False, True]


def test_moe_model_places_experts_every_other_layer_and_adds_router_losses():
    m = ModelConfig(
        kind="moe", vocab_size=16, d_model=8, n_layers=4, n_heads=2, d_ff=16, seq_len=6, n_experts=4
    )
    model = Transformer(m)
    kinds = [type(b.ffn).__name__ for b in model.blocks]
    assert kinds == ["MLP", "SwitchFFN", "MLP", "SwitchFFN"]
    tokens = torch.randint(0, 16, (2, 6))
    logits, moe_stats = model(tokens)
    loss, stats = training_loss(logits, tokens, moe_stats)
    aux = sum(s["aux_loss"].item() for s in moe_stats)
    z = sum(s["z_loss"].item() for s in moe_stats)
    assert loss.item() == pytest.approx(stats[0].item() + aux + z, rel=1e-6)
    assert stats.shape == (4 + 4,)  # ce, aux, z, dropped, then 4 expert loads
    assert float(stats[4:].sum()) == pytest.approx(1.0)


def test_routing_groups_equal_each_group_routed_alone():
    """Capacity and the balance loss are per group: a batch of 4 sequences in 2 groups gives the
    outputs (and stats averaged over groups) of each half run on its own. This is what makes a
    data- or expert-parallel run do the same maths as one device."""
    grouped = _ffn(experts=4, cf_train=1.0, groups=2, seed=3)
    alone = _ffn(experts=4, cf_train=1.0, groups=1, seed=3)
    x = torch.randn(4, 6, 8, generator=torch.Generator().manual_seed(5))
    y, stats = grouped(x)
    halves = [alone(x[:2]), alone(x[2:])]
    torch.testing.assert_close(y, torch.cat([h[0] for h in halves]), rtol=1e-6, atol=1e-7)
    for key in ("aux_loss", "z_loss", "dropped_frac", "expert_load"):
        torch.testing.assert_close(stats[key], (halves[0][1][key] + halves[1][1][key]) / 2)


def test_grouped_dispatch_matches_the_loop_per_group_with_overflow():
    ffn = _ffn(experts=4, cf_train=1.0, groups=2)
    with torch.no_grad():
        ffn.router.weight.zero_()
        ffn.router.weight[0] = 5.0  # all to expert 0: capacity ceil(16/4)=4 of 16 per group
    x = torch.rand(2, 16, 8) + 0.1
    y, stats = ffn(x)
    for g in range(2):
        ref = loop_switch_ffn(x[g], ffn.router.weight, ffn.w_in_EDF, ffn.w_out_EFD, 1.0)
        torch.testing.assert_close(y[g], ref, rtol=1e-5, atol=1e-6)
    kept_rows = torch.count_nonzero(y.abs().sum(-1), dim=1)
    assert kept_rows.tolist() == [4, 4]  # each group keeps its own first 4 tokens
    assert stats["dropped_frac"].item() == pytest.approx(0.75)


def test_aux_loss_is_the_mean_over_groups_by_hand():
    ffn = _ffn(d=2, experts=2, groups=2)
    with torch.no_grad():  # logits [ln3, 0] for e0-like tokens, [0, ln3] for e1-like tokens
        ffn.router.weight.copy_(torch.tensor([[math.log(3), 0.0], [0.0, math.log(3)]]))
    # group 0: tokens e0, e1 -> balanced: f=[.5,.5], P=[.5,.5], 0.01*2*0.5 = 0.01
    # group 1: tokens e0, e0 -> f=[1,0], P=[.75,.25], 0.01*2*0.75 = 0.015; mean 0.0125
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])
    _, stats = ffn(x)
    assert stats["aux_loss"].item() == pytest.approx(0.0125)
    assert stats["expert_load"].tolist() == pytest.approx([0.75, 0.25])
