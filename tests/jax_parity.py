"""Cross-framework parity: copy a torch model's weights into the JAX model and compare outputs.

The torch and JAX models share parameter shapes up to a transpose (torch's nn.Linear stores
(out, in), the JAX model (in, out)), so a weight transfer must reproduce the logits, the loss
and the router decisions to within float32 (or bf16) rounding.
"""

from __future__ import annotations

import numpy as np


def torch_to_jax_params(torch_model) -> dict:
    """The JAX parameter pytree holding exactly the weights of a workloads.torch Transformer."""
    sd = {k: v.detach().float().cpu().numpy() for k, v in torch_model.state_dict().items()}
    m = torch_model.cfg

    def norm(prefix: str) -> dict:
        p = {"weight": sd[f"{prefix}.weight"]}
        if f"{prefix}.bias" in sd:
            p["bias"] = sd[f"{prefix}.bias"]
        return p

    params = {"tok_emb": sd["tok_emb.weight"], "norm_out": norm("norm_out"), "blocks": []}
    if "pos_emb.weight" in sd:
        params["pos_emb"] = sd["pos_emb.weight"]
    if not m.tie_embeddings:
        params["head"] = sd["head.weight"].T
    for i in range(m.n_layers):
        b = f"blocks.{i}"
        block = {
            "norm_attn": norm(f"{b}.norm_attn"),
            "qkv": sd[f"{b}.attn.qkv.weight"].T,
            "attn_proj": sd[f"{b}.attn.proj.weight"].T,
            "norm_ffn": norm(f"{b}.norm_ffn"),
        }
        if f"{b}.ffn.router.weight" in sd:
            block["moe"] = {
                "router": sd[f"{b}.ffn.router.weight"].T,
                "w_in_EDF": sd[f"{b}.ffn.w_in_EDF"],
                "w_out_EFD": sd[f"{b}.ffn.w_out_EFD"],
            }
        else:
            block["fc"] = sd[f"{b}.ffn.fc.weight"].T
            block["ffn_proj"] = sd[f"{b}.ffn.proj.weight"].T
        params["blocks"].append(block)
    return params


def compare_torch_jax(torch_model, tokens_BT: np.ndarray, training: bool = False) -> dict:
    """Transfer weights torch -> JAX, run both in float32 on the same batch, report the gaps."""
    import jax.numpy as jnp
    import torch

    from workloads.jax import model as jax_model
    from workloads.torch.model import training_loss as torch_training_loss

    m = torch_model.cfg
    torch_model.train(training)
    with torch.no_grad():
        t_logits, t_stats = torch_model(torch.from_numpy(tokens_BT[:, :-1]))
        t_loss, _ = torch_training_loss(t_logits, torch.from_numpy(tokens_BT[:, 1:]), t_stats)
    params = torch_to_jax_params(torch_model)
    j_logits, j_stats = jax_model.forward(
        params, jnp.asarray(tokens_BT[:, :-1]), m, training=training
    )
    j_loss, _ = jax_model.training_loss(j_logits, jnp.asarray(tokens_BT[:, 1:]), j_stats)
    t_np, j_np = t_logits.float().numpy(), np.asarray(j_logits, dtype=np.float32)
    return {
        "logits_rel_err": float(np.linalg.norm(t_np - j_np) / np.linalg.norm(t_np)),
        "loss_torch": float(t_loss),
        "loss_jax": float(j_loss),
        "same_routing": all(
            np.array_equal(np.asarray(js["expert_load"]), ts["expert_load"].numpy())
            for js, ts in zip(j_stats, t_stats, strict=True)
        ),
    }
