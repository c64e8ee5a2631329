"""The learning probe's PyTorch side (bench/learning-probe.ts runs it): the same UNet and text encoder as
bench/torch_unet.py, initialised like libs/diffusion (zero output convs, small embeddings), trained with
the same recipe on the same two images and prompts, sampled the same way (DDIM, eta 0, no guidance).

Usage: python3 bench/torch_learning_probe.py SPEC.json   (prints one JSON line per probe point)
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch_unet import Model  # noqa: E402


def main():
    spec = json.load(open(sys.argv[1]))
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    model = Model(spec)
    # libs/diffusion's initialisation: every block starts as the identity and the first ε prediction is 0.
    for name, m in model.named_modules():
        if name.endswith("conv2") or name.endswith("conv_out") or name.endswith(".out"):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
    nn.init.normal_(model.text.tok_emb.weight, std=0.02)
    nn.init.normal_(model.text.pos_emb, std=0.02)

    length = spec["text"]["maxLength"]
    n_prompts = len(spec["images"])
    ids = torch.tensor(spec["ids"]).view(n_prompts + 1, length)
    mask = torch.tensor(spec["mask"]).view(n_prompts + 1, length)
    bias = torch.where(mask > 0, 0.0, -1e9)[:, None, None, :].clone()
    bias[n_prompts] = 0  # the null prompt attends to every position, as in text-encoder.ts
    size = spec["unet"]["imageSize"]
    images = torch.tensor(spec["images"]).view(n_prompts, size, size, 3).permute(0, 3, 1, 2) * 2 - 1
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0).float()
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=0.0)
    g = torch.Generator().manual_seed(spec["seed"])

    def probe(step):
        with torch.no_grad():
            x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(5)).repeat(n_prompts, 1, 1, 1)
            ts = [round(1000 - i * 1000 / spec["sampleSteps"]) - 1 for i in range(spec["sampleSteps"])]
            for i, t in enumerate(ts):
                prev = ts[i + 1] if i + 1 < len(ts) else -1
                eps = model(x, torch.full((n_prompts,), t), ids[:n_prompts], bias[:n_prompts])
                ab = abar[t]
                ab_prev = abar[prev] if prev >= 0 else torch.tensor(1.0)
                x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
                eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()  # the step points at the clipped x0
                x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
            img = (x * 0.5 + 0.5).clamp(0, 1)
            border = img[:, :, 0, :].mean(dim=(1, 2)).tolist()
        print(json.dumps({"step": step, "border": border}), flush=True)

    batch = spec["batchSize"]
    for step in range(1, spec["steps"] + 1):
        for group in opt.param_groups:
            group["lr"] = spec["lr"] * min(1.0, step / spec["warmupSteps"])
        k = torch.randint(0, n_prompts, (batch,), generator=g)
        drop = torch.rand(batch, generator=g) < spec["promptDropout"]
        pid = torch.where(drop, torch.tensor(n_prompts), k)
        t = torch.randint(0, 1000, (batch,), generator=g)
        eps = torch.randn(images[k].shape, generator=g)
        ab = abar[t][:, None, None, None]
        xt = ab.sqrt() * images[k] + (1 - ab).sqrt() * eps
        loss = F.mse_loss(model(xt, t, ids[pid], bias[pid]), eps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % spec["every"] == 0:
            probe(step)


if __name__ == "__main__":
    main()
