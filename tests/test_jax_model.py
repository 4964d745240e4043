"""The JAX models: Switch dispatch equals a loop over experts, hand-computed router losses, and
torch -> JAX weight transfer reproducing the logits."""

from __future__ import annotations

import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from harness.compose import compose_config  # noqa: E402
from harness.config import ModelConfig  # noqa: E402
from workloads.jax import model as jm  # noqa: E402
from workloads.moe_rules import expert_capacity  # noqa: E402


def _moe_params(d=8, f=16, experts=4, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    return {
        "router": 0.5 * jax.random.normal(keys[0], (d, experts)),
        "w_in_EDF": 0.5 * jax.random.normal(keys[1], (experts, d, f)),
        "w_out_EFD": 0.5 * jax.random.normal(keys[2], (experts, f, d)),
    }


def loop_reference(p, x_ND, expert_N: np.ndarray, capacity: int):
    """Each expert's first `capacity` tokens, in token order, through that expert; zeros otherwise.
    Routing is given as concrete numpy so the loop can index while being differentiated."""
    probs = jax.nn.softmax(x_ND.astype(jnp.float32) @ p["router"], axis=-1)
    gate = probs[np.arange(x_ND.shape[0]), expert_N]
    y = jnp.zeros_like(x_ND)
    for e in range(p["router"].shape[1]):
        mine = np.flatnonzero(expert_N == e)[:capacity]
        if mine.size:
            h = jax.nn.gelu(x_ND[mine] @ p["w_in_EDF"][e], approximate=True) @ p["w_out_EFD"][e]
            y = y.at[mine].set(h * gate[mine, None])
    return y


def _check_against_loop(p, x_BTD, m, training=True):
    n, d = x_BTD.shape[0] * x_BTD.shape[1], x_BTD.shape[2]
    expert_N = np.asarray(jm.route(p, x_BTD.reshape(n, d), 0.0, None)[0])
    cf = m.capacity_factor_train if training else m.capacity_factor_eval
    capacity = expert_capacity(n, m.n_experts, cf)

    def fast(p, x):
        y, _ = jm.switch_ffn(p, x, m, training, None, jnp.float32)
        return y

    def ref(p, x):
        return loop_reference(p, x.reshape(n, d), expert_N, capacity).reshape(x.shape)

    fast, ref = (
        jax.jit(fast),
        jax.jit(ref),
    )  # routing indices are closure constants: both trace once
    np.testing.assert_allclose(fast(p, x_BTD), ref(p, x_BTD), rtol=1e-5, atol=1e-6)
    upstream = jax.random.normal(jax.random.PRNGKey(9), x_BTD.shape)
    g_fast = jax.jit(jax.grad(lambda p, x: jnp.sum(fast(p, x) * upstream), argnums=(0, 1)))(
        p, x_BTD
    )
    g_ref = jax.jit(jax.grad(lambda p, x: jnp.sum(ref(p, x) * upstream), argnums=(0, 1)))(p, x_BTD)
    for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    return capacity


@pytest.mark.parametrize("seed", [0, 1])
def test_dispatch_matches_the_loop_in_outputs_and_gradients(seed):
    m = ModelConfig(kind="moe", n_experts=4, capacity_factor_train=1.25)
    x = jax.random.normal(jax.random.PRNGKey(seed + 10), (3, 10, 8))
    _check_against_loop(_moe_params(seed=seed), x, m)


def test_capacity_overflow_drops_to_zero_and_matches_the_loop():
    m = ModelConfig(kind="moe", n_experts=4, capacity_factor_train=1.0)
    p = _moe_params()
    p["router"] = jnp.zeros((8, 4)).at[:, 0].set(5.0)  # every positive token wants expert 0
    x = jax.random.uniform(jax.random.PRNGKey(3), (2, 16, 8)) + 0.1
    capacity = _check_against_loop(p, x, m)
    y, stats = jm.switch_ffn(p, x, m, True, None, jnp.float32)
    rows = np.asarray(jnp.abs(y.reshape(32, 8)).sum(-1))
    assert capacity == 8 and (rows[:8] > 0).all() and (rows[8:] == 0).all()
    assert float(stats["dropped_frac"]) == pytest.approx(0.75)
    _, eval_stats = jm.switch_ffn(p, x, m, False, None, jnp.float32)  # eval factor 2.0: 16 slots
    assert float(eval_stats["dropped_frac"]) == pytest.approx(0.5)


def test_aux_and_z_loss_by_hand():
    m = ModelConfig(kind="moe", n_experts=2)
    p = _moe_params(d=2, experts=2)
    # torch stores the router as (E, D); here (D, E). logits token0 [ln3, 0], token1 [0, ln3]
    p["router"] = jnp.array([[math.log(3), 0.0], [0.0, math.log(3)]])
    _, stats = jm.switch_ffn(p, jnp.eye(2).reshape(1, 2, 2), m, True, None, jnp.float32)
    assert float(stats["aux_loss"]) == pytest.approx(0.01)
    assert float(stats["z_loss"]) == pytest.approx(1e-3 * math.log(4) ** 2)
    p["router"] = jnp.array([[math.log(3), 0.0], [math.log(3), 0.0]])  # both tokens to expert 0
    _, stats = jm.switch_ffn(p, jnp.eye(2).reshape(1, 2, 2), m, True, None, jnp.float32)
    assert float(stats["aux_loss"]) == pytest.approx(0.015)


def test_routing_groups_equal_each_group_routed_alone():
    grouped = ModelConfig(kind="moe", n_experts=4, capacity_factor_train=1.0, routing_groups=2)
    alone = ModelConfig(kind="moe", n_experts=4, capacity_factor_train=1.0)
    p = _moe_params(seed=4)
    x = jax.random.normal(jax.random.PRNGKey(7), (4, 6, 8))
    y, stats = jm.switch_ffn(p, x, grouped, True, None, jnp.float32)
    halves = [jm.switch_ffn(p, x[i : i + 2], alone, True, None, jnp.float32) for i in (0, 2)]
    np.testing.assert_allclose(y, jnp.concatenate([h[0] for h in halves]), rtol=1e-6, atol=1e-7)
    for key in ("aux_loss", "z_loss", "dropped_frac", "expert_load"):
        np.testing.assert_allclose(
            stats[key], (halves[0][1][key] + halves[1][1][key]) / 2, rtol=1e-6
        )
    # by hand: group 0 balanced (aux 0.01), group 1 all to expert 0 (aux 0.015) -> mean 0.0125
    m2 = ModelConfig(kind="moe", n_experts=2, routing_groups=2)
    p2 = _moe_params(d=2, experts=2)
    p2["router"] = jnp.array([[math.log(3), 0.0], [0.0, math.log(3)]])
    tokens = jnp.array([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])
    _, stats = jm.switch_ffn(p2, tokens, m2, True, None, jnp.float32)
    assert float(stats["aux_loss"]) == pytest.approx(0.0125)


@pytest.mark.parametrize("benchmark", ["lm-dense-tiny", "lm-moe-tiny"])
def test_torch_to_jax_transfer_reproduces_logits(benchmark):
    torch = pytest.importorskip("torch")
    from tests.jax_parity import compare_torch_jax
    from workloads.torch.model import Transformer

    cfg, _ = compose_config([f"benchmark={benchmark}"])
    torch.manual_seed(0)
    model = Transformer(cfg.benchmark.model)
    tokens = np.random.default_rng(0).integers(
        0, cfg.benchmark.model.vocab_size, (4, cfg.benchmark.model.seq_len + 1)
    )
    report = compare_torch_jax(model, tokens)
    assert report["logits_rel_err"] < 1e-4
    assert report["loss_jax"] == pytest.approx(report["loss_torch"], rel=1e-5)
    assert report["same_routing"]


def test_jax_param_count_matches_the_flop_model():
    from workloads.flops import transformer_param_counts

    for kind in ("dense", "moe"):
        m = ModelConfig(
            kind=kind,
            vocab_size=50,
            d_model=32,
            n_layers=3,
            n_heads=4,
            d_ff=64,
            seq_len=16,
            n_experts=4,
        )
        shapes = jax.eval_shape(lambda m=m: jm.init_params(m, jax.random.PRNGKey(0)))
        assert sum(a.size for a in jax.tree.leaves(shapes)) == transformer_param_counts(m).total
