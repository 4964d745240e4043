"""A plain JAX/optax loop metered with joulebench: `python -m examples.jax_loop`."""

import jax
import optax

from harness.api import Measurement


def train(run_dir="runs/jax-mlp", meter="auto", seed=0, **settings) -> bool:
    k_teacher, k_1, k_2, k_data = jax.random.split(jax.random.PRNGKey(seed), 4)
    teacher, init = jax.random.normal(k_teacher, (32, 4)), jax.nn.initializers.lecun_normal()
    params = {"w1": init(k_1, (32, 256)), "w2": init(k_2, (256, 4))}
    opt = optax.adamw(3e-3)
    state, x_eval = opt.init(params), jax.random.normal(k_data, (4096, 32))

    def loss_fn(p, x):  # labels from a fixed random teacher
        logits, labels = jax.nn.gelu(x @ p["w1"]) @ p["w2"], (x @ teacher).argmax(-1)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @jax.jit
    def step_fn(p, s, key):
        loss, grads = jax.value_and_grad(loss_fn)(p, jax.random.normal(key, (512, 32)))
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    target = ("eval_loss", 0.1, "lower")
    with Measurement("teacher-mlp", meter, run_dir, target, seed=seed, **settings) as m:
        for step in range(1, 5001):
            params, state, loss = step_fn(params, state, jax.random.fold_in(k_data, step))
            m.step(tokens=512, loss=loss)  # a jax.Array: read at the window edge, after sync
            if step % 100 == 0 and m.evaluate(float(loss_fn(params, x_eval))):
                break
    return m.reached


if __name__ == "__main__":
    raise SystemExit(0 if train() else 1)
