"""A plain PyTorch loop metered with joulebench: `python -m examples.torch_loop`."""

import torch
import torch.nn.functional as F
from torch import nn

from harness.api import Measurement


def train(run_dir="runs/torch-mlp", meter="auto", seed=0, **settings) -> bool:
    torch.manual_seed(seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    teacher = nn.Linear(32, 4).to(dev)  # labels from a fixed random teacher
    model = nn.Sequential(nn.Linear(32, 256), nn.GELU(), nn.Linear(256, 4)).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x_eval = torch.randn(4096, 32, device=dev)
    target = ("eval_loss", 0.1, "lower")
    with Measurement("teacher-mlp", meter, run_dir, target, seed=seed, **settings) as m:
        for step in range(1, 5001):
            x = torch.randn(512, 32, device=dev)
            loss = F.cross_entropy(model(x), teacher(x).argmax(-1).detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            m.step(tokens=512, loss=loss.detach())  # read at the window edge, after sync
            if step % 100 == 0:
                with torch.no_grad():
                    loss = F.cross_entropy(model(x_eval), teacher(x_eval).argmax(-1))
                if m.evaluate(loss.item()):
                    break
    return m.reached


if __name__ == "__main__":
    raise SystemExit(0 if train() else 1)
