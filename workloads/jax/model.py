"""The dense and Switch-MoE decoder in pure JAX, with the same maths as workloads/torch/model.py.

Parameters are a plain pytree of arrays. Matrices are stored (in, out), the transpose of
torch's nn.Linear (out, in); `tests/jax_parity.py` converts between the two. Shapes are in
names: B batch, T sequence, D width, H heads, K head width, F FFN width, V vocabulary,
N tokens, E experts, C expert capacity.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from workloads.moe_rules import expert_capacity, is_moe_layer


# -- parameters ---------------------------------------------------------------------------
def init_params(m, key: jax.Array) -> dict:
    """GPT-2 init as in torch: N(0, std); residual output projections scaled by 1/sqrt(2 L)."""
    std, out_std = m.init_std, m.init_std / math.sqrt(2 * m.n_layers)
    keys = iter(jax.random.split(key, 4 + 6 * m.n_layers))

    def normal(shape, scale=std):
        return scale * jax.random.normal(next(keys), shape, jnp.float32)

    def norm():
        p = {"weight": jnp.ones((m.d_model,), jnp.float32)}
        if m.norm == "layernorm":
            p["bias"] = jnp.zeros((m.d_model,), jnp.float32)
        return p

    params = {"tok_emb": normal((m.vocab_size, m.d_model)), "norm_out": norm(), "blocks": []}
    if m.positions == "learned":
        params["pos_emb"] = normal((m.seq_len, m.d_model))
    if not m.tie_embeddings:
        params["head"] = normal((m.d_model, m.vocab_size))
    for layer in range(m.n_layers):
        block = {
            "norm_attn": norm(),
            "qkv": normal((m.d_model, 3 * m.d_model)),
            "attn_proj": normal((m.d_model, m.d_model), out_std),
            "norm_ffn": norm(),
        }
        if m.kind == "moe" and is_moe_layer(layer, m.moe_every):
            block["moe"] = {
                "router": normal((m.d_model, m.n_experts)),
                "w_in_EDF": normal((m.n_experts, m.d_model, m.d_ff)),
                "w_out_EFD": normal((m.n_experts, m.d_ff, m.d_model), out_std),
            }
        else:
            block["fc"] = normal((m.d_model, m.d_ff))
            block["ffn_proj"] = normal((m.d_ff, m.d_model), out_std)
        params["blocks"].append(block)
    return params


# -- layers -------------------------------------------------------------------------------
def apply_norm(p: dict, x_BTD: jax.Array, kind: str, eps: float = 1e-6) -> jax.Array:
    x32 = x_BTD.astype(jnp.float32)
    if kind == "rmsnorm":
        out = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps) * p["weight"]
    else:
        mean = x32.mean(-1, keepdims=True)
        var = ((x32 - mean) ** 2).mean(-1, keepdims=True)
        out = (x32 - mean) * jax.lax.rsqrt(var + eps) * p["weight"] + p["bias"]
    return out.astype(x_BTD.dtype)


def rope_tables(seq_len: int, head_dim: int, base: float = 10000.0) -> tuple[jax.Array, jax.Array]:
    inv_freq = 1.0 / (base ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    angles_TK = jnp.outer(jnp.arange(seq_len, dtype=jnp.float32), inv_freq)
    return jnp.cos(angles_TK), jnp.sin(angles_TK)


def apply_rope(x_BTHK: jax.Array, cos_TK: jax.Array, sin_TK: jax.Array) -> jax.Array:
    half = x_BTHK.shape[-1] // 2
    x1, x2 = x_BTHK[..., :half].astype(jnp.float32), x_BTHK[..., half:].astype(jnp.float32)
    cos, sin = cos_TK[None, :, None, :], sin_TK[None, :, None, :]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x_BTHK.dtype)


def attention(
    p: dict, x_BTD: jax.Array, n_heads: int, rope, dtype, attn_impl: str | None = None
) -> jax.Array:
    B, T, D = x_BTD.shape
    qkv = x_BTD.astype(dtype) @ p["qkv"].astype(dtype)
    q, k, v = (t.reshape(B, T, n_heads, D // n_heads) for t in jnp.split(qkv, 3, axis=-1))
    if rope is not None:
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    # attn_impl="cudnn" is the fused flash kernel on NVIDIA GPUs (bf16); None is XLA's own
    out_BTHK = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation=attn_impl)
    return out_BTHK.reshape(B, T, D) @ p["attn_proj"].astype(dtype)


def mlp(p: dict, x_BTD: jax.Array, dtype) -> jax.Array:
    hidden = jax.nn.gelu(x_BTD.astype(dtype) @ p["fc"].astype(dtype), approximate=True)
    return hidden @ p["ffn_proj"].astype(dtype)


def route(p: dict, x_GSD: jax.Array, jitter: float, key: jax.Array | None):
    """float32 router: (expert_GS, gate_GS, probs_GSE, logits_GSE)."""
    x32 = x_GSD.astype(jnp.float32)
    if key is not None and jitter > 0:
        x32 = x32 * jax.random.uniform(key, x32.shape, jnp.float32, 1.0 - jitter, 1.0 + jitter)
    logits_GSE = x32 @ p["router"].astype(jnp.float32)
    probs_GSE = jax.nn.softmax(logits_GSE, axis=-1)
    expert_GS = jnp.argmax(probs_GSE, axis=-1)
    gate_GS = jnp.take_along_axis(probs_GSE, expert_GS[..., None], axis=-1)[..., 0]
    return expert_GS, gate_GS, probs_GSE, logits_GSE


def switch_ffn(p: dict, x_BTD: jax.Array, m, training: bool, key, dtype, expert_sharding=None):
    """Top-1 Switch FFN with index dispatch, routed in `m.routing_groups` groups as in torch:
    slots from a cumulative sum over the one-hot routing, kept tokens scattered into a
    (G, E, C, D) buffer, two batched matmuls, gathered back. Dropped tokens point at a spare
    row that no expert reads and that is zero in the output."""
    B, T, D = x_BTD.shape
    E, G = m.n_experts, m.routing_groups
    S = B * T // G
    x_GSD = x_BTD.reshape(G, S, D)
    expert_GS, gate_GS, probs_GSE, logits_GSE = route(p, x_GSD, m.jitter if training else 0.0, key)
    C = expert_capacity(S, E, m.capacity_factor_train if training else m.capacity_factor_eval)

    onehot_GSE = jax.nn.one_hot(expert_GS, E, dtype=jnp.int32)
    position_GS = jnp.sum(jnp.cumsum(onehot_GSE, axis=1) * onehot_GSE, axis=-1) - 1
    keep_GS = position_GS < C
    group_G1 = jnp.arange(G)[:, None]
    slot_N = jnp.where(keep_GS, (group_G1 * E + expert_GS) * C + position_GS, G * E * C).reshape(-1)

    buffer = (
        jnp.zeros((G * E * C + 1, D), dtype)
        .at[slot_N]
        .set(x_GSD.reshape(-1, D).astype(dtype), mode="drop")
    )
    in_GECD = buffer[: G * E * C].reshape(G, E, C, D)
    if expert_sharding is not None:  # experts live on the mesh's expert axis: XLA moves tokens
        in_GECD = jax.lax.with_sharding_constraint(in_GECD, expert_sharding)
    hidden_GECF = jax.nn.gelu(
        jnp.einsum("gecd,edf->gecf", in_GECD, p["w_in_EDF"].astype(dtype)), approximate=True
    )
    out_GECD = jnp.einsum("gecf,efd->gecd", hidden_GECF, p["w_out_EFD"].astype(dtype))
    out_flat = jnp.concatenate([out_GECD.reshape(G * E * C, D), jnp.zeros((1, D), out_GECD.dtype)])
    y_ND = (out_flat[slot_N].astype(jnp.float32) * gate_GS.reshape(-1, 1)).astype(x_BTD.dtype)

    routed_GE = onehot_GSE.astype(jnp.float32).mean(axis=1)  # f_i per group, before dropping
    balance_G = jnp.sum(routed_GE * probs_GSE.mean(axis=1), axis=-1)
    stats = {
        "aux_loss": m.aux_loss_coef * E * balance_G.mean(),
        "z_loss": m.z_loss_coef * jnp.mean(jax.nn.logsumexp(logits_GSE, axis=-1) ** 2),
        "dropped_frac": 1.0 - keep_GS.astype(jnp.float32).mean(),
        "expert_load": routed_GE.mean(axis=0),
    }
    return y_ND.reshape(B, T, D), stats


# -- model --------------------------------------------------------------------------------
def forward(
    params: dict,
    tokens_BT: jax.Array,
    m,
    training: bool = False,
    key=None,
    dtype=jnp.float32,
    expert_sharding=None,
    attn_impl: str | None = None,
):
    """Logits and the router statistics of each MoE layer. Like torch autocast: parameters and
    the residual stream in float32, matmul inputs in `dtype` (bf16 on accelerators)."""
    x_BTD = params["tok_emb"][tokens_BT]
    if "pos_emb" in params:
        x_BTD = x_BTD + params["pos_emb"][: tokens_BT.shape[1]]
    rope = rope_tables(m.seq_len, m.d_model // m.n_heads) if m.positions == "rope" else None
    moe_stats = []  # the residual stream stays float32; matmul inputs are cast to `dtype`
    for i, block in enumerate(params["blocks"]):
        h_BTD = apply_norm(block["norm_attn"], x_BTD, m.norm)
        x_BTD = x_BTD + attention(block, h_BTD, m.n_heads, rope, dtype, attn_impl)
        h_BTD = apply_norm(block["norm_ffn"], x_BTD, m.norm)
        if "moe" in block:
            layer_key = None if key is None else jax.random.fold_in(key, i)
            out, stats = switch_ffn(
                block["moe"], h_BTD, m, training, layer_key, dtype, expert_sharding
            )
            moe_stats.append(stats)
        else:
            out = mlp(block, h_BTD, dtype)
        x_BTD = x_BTD + out
    head = params["tok_emb"].T if "head" not in params else params["head"]
    logits_BTV = apply_norm(params["norm_out"], x_BTD, m.norm).astype(dtype) @ head.astype(dtype)
    return logits_BTV, moe_stats


def lm_loss(logits_BTV: jax.Array, targets_BT: jax.Array) -> jax.Array:
    """Mean next-token cross entropy in nats, computed in float32."""
    logp = jax.nn.log_softmax(logits_BTV.astype(jnp.float32), axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, targets_BT[..., None], axis=-1))


def training_loss(logits_BTV, targets_BT, moe_stats) -> tuple[jax.Array, jax.Array]:
    """(total loss, stats vector [ce, aux, z, dropped, expert load...]) as in the torch model."""
    ce = lm_loss(logits_BTV, targets_BT)
    if not moe_stats:
        return ce, ce.reshape(1)
    aux = sum(s["aux_loss"] for s in moe_stats)
    z = sum(s["z_loss"] for s in moe_stats)
    dropped = sum(s["dropped_frac"] for s in moe_stats) / len(moe_stats)
    load_E = sum(s["expert_load"] for s in moe_stats) / len(moe_stats)
    return ce + aux + z, jnp.concatenate([jnp.stack([ce, aux, z, dropped]), load_E])
