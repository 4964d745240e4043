"""torch.compile sees each model as one graph (no graph breaks on the hot path) and agrees with eager.

The GPU path compiles with Inductor; here the aot_eager backend traces the same graphs through
Dynamo and AOTAutograd without generating kernels, which keeps the check to seconds on a CPU.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from harness.config import ModelConfig  # noqa: E402
from workloads.torch.model import Transformer, training_loss  # noqa: E402


@pytest.mark.parametrize("kind", ["dense", "moe"])
def test_fullgraph_compile_matches_eager_in_loss_and_gradients(kind):
    m = ModelConfig(
        kind=kind, vocab_size=32, d_model=16, n_layers=2, n_heads=2, d_ff=32, seq_len=8, n_experts=4
    )
    torch.manual_seed(0)
    model = Transformer(m)
    tokens = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(1))
    compiled = torch.compile(
        model, fullgraph=True, backend="aot_eager"
    )  # raises on any graph break

    loss_c, stats_c = training_loss(*_with_targets(compiled(tokens), tokens))
    grads_c = torch.autograd.grad(loss_c, list(model.parameters()))
    loss_e, stats_e = training_loss(*_with_targets(model(tokens), tokens))
    grads_e = torch.autograd.grad(loss_e, list(model.parameters()))
    torch.testing.assert_close(loss_c, loss_e)
    torch.testing.assert_close(stats_c, stats_e)
    for g_c, g_e in zip(grads_c, grads_e, strict=True):
        torch.testing.assert_close(g_c, g_e, rtol=1e-5, atol=1e-7)


def _with_targets(out, tokens):
    logits, moe_stats = out
    return logits, tokens, moe_stats
