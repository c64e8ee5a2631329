"""The idpo UNet + text encoder in PyTorch, for `npm run bench`'s reference column.

Same layers, shapes and parameters as libs/diffusion/src/unet.ts and text-encoder.ts (guided-diffusion
layout): ResBlocks with GroupNorm + SiLU and a timestep projection, cross-attention to the text tokens
at the configured resolutions and in the middle, stride-2 conv downsampling, nearest + conv upsampling,
skip concatenation; a pre-LN transformer text encoder with token and position embeddings. The script
asserts that its parameter count equals the tfjs model's (passed in by bench/run.ts).

Measures, with the same batch sizes as bench/measure.ts: UNet forward images/s, DDIM-20 sampling with
classifier-free guidance, improver sampling with double guidance, and Diffusion-DPO training pairs/s
(policy forward + backward, frozen reference forward, AdamW, gradient clipping).

Usage: python3 bench/torch_unet.py SPEC.json   (prints one line: BENCH_RESULT <json>)
"""

import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResBlock(nn.Module):
    def __init__(self, cin, cout, tdim, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(tdim, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        # unet.ts: a per-pixel linear layer (weights [cin, cout] + bias) when the width changes.
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, h, tact):
        y = self.conv1(F.silu(self.norm1(h)))
        y = y + self.temb(tact)[:, :, None, None]
        y = self.conv2(F.silu(self.norm2(y)))
        return (self.skip(h) if self.skip is not None else h) + y


class CrossAttention(nn.Module):
    def __init__(self, ch, text_dim, heads, groups):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, ch, eps=1e-5)
        self.q = nn.Linear(ch, ch, bias=False)
        self.k = nn.Linear(text_dim, ch, bias=False)
        self.v = nn.Linear(text_dim, ch, bias=False)
        self.out = nn.Linear(ch, ch)

    def forward(self, h, tokens, bias):
        n, c, hh, ww = h.shape
        length = tokens.shape[1]
        d = c // self.heads
        x = self.norm(h).flatten(2).transpose(1, 2)
        q = self.q(x).view(n, hh * ww, self.heads, d).transpose(1, 2)
        k = self.k(tokens).view(n, length, self.heads, d).transpose(1, 2)
        v = self.v(tokens).view(n, length, self.heads, d).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d) + bias
        o = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, hh * ww, c)
        return h + self.out(o).transpose(1, 2).reshape(n, c, hh, ww)


class UNet(nn.Module):
    def __init__(self, u):
        super().__init__()
        self.u = u
        base, tdim, groups = u["baseChannels"], u["timeEmbedDim"], u["groups"]
        self.time_fc1 = nn.Linear(base, tdim)
        self.time_fc2 = nn.Linear(tdim, tdim)
        self.text_pool = nn.Linear(u["textDim"], tdim)
        self.conv_in = nn.Conv2d(u["inChannels"] + u["condChannels"], base, 3, padding=1)
        self.blocks = nn.ModuleDict()
        levels = len(u["channelMult"])
        size = u["imageSize"]
        ch = base
        skips = [ch]
        self.plan = []
        for i in range(levels):
            out = base * u["channelMult"][i]
            for j in range(u["numResBlocks"]):
                self._res(f"down_{i}_res_{j}", ch, out)
                ch = out
                if size in u["attentionResolutions"]:
                    self._attn(f"down_{i}_attn_{j}", ch)
                self.plan.append(("push",))
                skips.append(ch)
            if i < levels - 1:
                name = f"down_{i}_downsample"
                # tfjs' "same" padding on a stride-2 conv of an even size pads bottom/right only.
                self.blocks[name] = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(ch, ch, 3, stride=2))
                self.plan.append(("conv", name))
                self.plan.append(("push",))
                size //= 2
                skips.append(ch)
        self._res("mid_res_0", ch, ch)
        if u["midAttention"]:
            self._attn("mid_attn", ch)
        self._res("mid_res_1", ch, ch)
        for i in range(levels - 1, -1, -1):
            out = base * u["channelMult"][i]
            for j in range(u["numResBlocks"] + 1):
                skip = skips.pop()
                self.plan.append(("pop",))
                self._res(f"up_{i}_res_{j}", ch + skip, out)
                ch = out
                if size in u["attentionResolutions"]:
                    self._attn(f"up_{i}_attn_{j}", ch)
            if i > 0:
                name = f"up_{i}_upsample"
                self.blocks[name] = nn.Conv2d(ch, ch, 3, padding=1)
                self.plan.append(("up", name))
                size *= 2
        self.norm_out = nn.GroupNorm(groups, ch, eps=1e-5)
        self.conv_out = nn.Conv2d(ch, u["outChannels"], 3, padding=1)

    def _res(self, name, cin, cout):
        self.blocks[name] = ResBlock(cin, cout, self.u["timeEmbedDim"], self.u["groups"])
        self.plan.append(("res", name))

    def _attn(self, name, ch):
        self.blocks[name] = CrossAttention(ch, self.u["textDim"], self.u["heads"], self.u["groups"])
        self.plan.append(("attn", name))

    def forward(self, x, t, tokens, bias, cond=None):
        base = self.u["baseChannels"]
        half = base // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        args = t.float()[:, None] * freqs[None]
        sinus = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
        # unet.ts: the prompt's mean over its real tokens (all positions for the null prompt) is projected
        # and added to the timestep embedding.
        real = (bias[:, 0, 0, :] == 0).float()
        pooled = (tokens * real[:, :, None]).sum(1) / real.sum(1, keepdim=True)
        temb = self.time_fc2(F.silu(self.time_fc1(sinus))) + self.text_pool(pooled)
        tact = F.silu(temb)
        h = self.conv_in(torch.cat([x, cond], 1) if cond is not None else x)
        stack = [h]
        for step in self.plan:
            kind = step[0]
            if kind == "res":
                h = self.blocks[step[1]](h, tact)
            elif kind == "attn":
                h = self.blocks[step[1]](h, tokens, bias)
            elif kind == "conv":
                h = self.blocks[step[1]](h)
            elif kind == "up":
                h = self.blocks[step[1]](F.interpolate(h, scale_factor=2, mode="nearest"))
            elif kind == "push":
                stack.append(h)
            elif kind == "pop":
                h = torch.cat([h, stack.pop()], 1)
        return self.conv_out(F.silu(self.norm_out(h)))


class TextEncoder(nn.Module):
    def __init__(self, t):
        super().__init__()
        d = t["dim"]
        self.heads = t["heads"]
        self.tok_emb = nn.Embedding(t["vocabSize"], d)
        self.pos_emb = nn.Parameter(torch.zeros(t["maxLength"], d))
        self.blocks = nn.ModuleList()
        for _ in range(t["layers"]):
            self.blocks.append(
                nn.ModuleDict(
                    {
                        "ln1": nn.LayerNorm(d, eps=1e-5),
                        "qkv": nn.Linear(d, 3 * d),
                        "proj": nn.Linear(d, d),
                        "ln2": nn.LayerNorm(d, eps=1e-5),
                        "fc1": nn.Linear(d, d * t["mlpRatio"]),
                        "fc2": nn.Linear(d * t["mlpRatio"], d),
                    }
                )
            )
        self.ln_f = nn.LayerNorm(d, eps=1e-5)

    def forward(self, ids, bias):
        n, length = ids.shape
        x = self.tok_emb(ids) + self.pos_emb
        d = x.shape[-1]
        hd = d // self.heads
        for b in self.blocks:
            q, k, v = b["qkv"](b["ln1"](x)).split(d, dim=-1)
            q, k, v = (z.view(n, length, self.heads, hd).transpose(1, 2) for z in (q, k, v))
            att = ((q @ k.transpose(-1, -2)) / math.sqrt(hd) + bias).softmax(-1) @ v
            x = x + b["proj"](att.transpose(1, 2).reshape(n, length, d))
            x = x + b["fc2"](F.gelu(b["fc1"](b["ln2"](x)), approximate="tanh"))
        return self.ln_f(x)


class Model(nn.Module):
    def __init__(self, spec, cond_channels=0):
        super().__init__()
        u = dict(spec["unet"])
        u["condChannels"] = cond_channels
        self.text = TextEncoder(spec["text"])
        self.unet = UNet(u)

    def forward(self, x, t, ids, bias, cond=None):
        tokens = self.text(ids, bias)
        return self.unet(x, t, tokens, bias, cond)


def count(module):
    return sum(p.numel() for p in module.parameters())


def prompts(spec, n, seed, null=0):
    """Token ids and the key bias of n prompts of 7 real tokens, then `null` null prompts (all padding,
    attending to every position: what the tfjs tokenizer makes of "")."""
    g = torch.Generator().manual_seed(seed)
    length = spec["text"]["maxLength"]
    ids = torch.randint(2, spec["text"]["vocabSize"], (n + null, length), generator=g)
    ids[:, 7:] = 0
    ids[n:] = 0
    bias = torch.zeros(n + null, 1, 1, length)
    bias[:n, :, :, 7:] = -1e9
    return ids, bias


# Training steps before a training figure is timed, as in bench/measure.ts (the steady state is measured).
TRAIN_WARMUP_STEPS = 3


def warm_up(step):
    for _ in range(TRAIN_WARMUP_STEPS):
        step()


def timed(fn, min_seconds, warmup=None):
    (warmup or fn)()
    calls = 0
    start = time.perf_counter()
    cpu = time.process_time()
    elapsed = 0.0
    while calls < 1 or elapsed < min_seconds:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
    return elapsed / calls, (time.process_time() - cpu) / calls, calls


def measurement(timing, units, flops):
    seconds, cpu_seconds, calls = timing
    return {
        "perSecond": units / seconds,
        "gflops": flops / seconds / 1e9,
        "secondsPerCall": seconds,
        "cpuSecondsPerCall": cpu_seconds,
        "calls": calls,
        "unitsPerCall": units,
    }


def ddim(model, n, steps, branches, spec, guide, images=None):
    """DDIM (eta 0) with `branches` UNet evaluations per image per step, batched into one call: the work
    of sample() and improve() in libs/diffusion. The prompts are encoded once per call (n prompts, then
    the null prompt for the other branches); the improver's [0, 1] condition images are mapped to model
    space and laid out for the three branches (x, c), (x, ∅), (∅, ∅) once per call; the result is
    returned as [0, 1] images."""
    size = spec["unet"]["imageSize"]
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0).float()
    ts = [round(1000 - i * 1000 / steps) - 1 for i in range(steps)]
    ids, bias = prompts(spec, n, 11, null=n * (branches - 1))
    x = torch.randn(n, 3, size, size)
    with torch.inference_mode():
        tokens = model.text(ids, bias)
        cond = None
        if images is not None:
            c = images * 2 - 1
            cond = torch.cat([c, c, torch.zeros_like(c)], 0)
        for i, t in enumerate(ts):
            prev = ts[i + 1] if i + 1 < len(ts) else -1
            xin = torch.cat([x] * branches, 0)
            tt = torch.full((n * branches,), t, dtype=torch.long)
            eps = guide(model.unet(xin, tt, tokens, bias, cond).chunk(branches, 0))
            ab = abar[t]
            ab_prev = abar[prev] if prev >= 0 else torch.tensor(1.0)
            x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()  # the step points at the clipped x0
            x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
        return (x * 0.5 + 0.5).clamp(0, 1)


def main():
    spec = json.load(open(sys.argv[1]))
    threads = spec["threads"]
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(0)
    policy = Model(spec)
    expected = spec["params"]
    got = {"unet": count(policy.unet), "text": count(policy.text)}
    if got["unet"] != expected["unet"] or got["text"] != expected["text"]:
        raise SystemExit(f"torch_unet.py: parameter counts {got} differ from the tfjs model's {expected}")
    improver = Model(spec, cond_channels=3)
    size = spec["unet"]["imageSize"]
    flops = spec["flops"]
    min_s = spec["minSeconds"]
    load_before = list(os.getloadavg())

    fb = spec["forwardBatch"]
    ids, bias = prompts(spec, fb, 1)
    with torch.inference_mode():
        tokens = policy.text(ids, bias)
    x = torch.randn(fb, 3, size, size)
    t = torch.arange(fb) * 37 % 1000

    def fwd():
        with torch.inference_mode():
            policy.unet(x, t, tokens, bias)

    timing = timed(fwd, min_s)
    forward = measurement(timing, fb, fb * flops["unetForwardPerImage"])

    n = spec["sampleImages"]
    steps = 20
    cfg = lambda e: e[1] + 3.0 * (e[0] - e[1])
    timing = timed(lambda: ddim(policy, n, steps, 2, spec, cfg), min_s, lambda: ddim(policy, n, 2, 2, spec, cfg))
    sampling = measurement(
        timing, n, n * (steps * 2 * flops["unetForwardPerImage"] + 2 * flops["textForwardPerPrompt"])
    )

    images = torch.rand(n, 3, size, size)
    # Double guidance (Eq. 9) with s_I = 3, s_T = 3.5 on (image+text, image, none).
    double = lambda e: e[2] + 3.0 * (e[1] - e[2]) + 3.5 * (e[0] - e[1])
    timing = timed(
        lambda: ddim(improver, n, steps, 3, spec, double, images),
        min_s,
        lambda: ddim(improver, n, 2, 3, spec, double, images),
    )
    improver_m = measurement(
        timing,
        n,
        n * (steps * 3 * flops["improverUnetForwardPerImage"] + 3 * flops["textForwardPerPrompt"]),
    )

    pairs = spec["trainPairs"]
    reference = Model(spec)
    reference.load_state_dict(policy.state_dict())
    for p in reference.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-5, weight_decay=0.01)
    xw = torch.rand(pairs, 3, size, size) * 2 - 1
    xl = torch.rand(pairs, 3, size, size) * 2 - 1
    ids2, bias2 = prompts(spec, 2 * pairs, 2)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0).float()

    def train_step():
        tt = torch.randint(0, 1000, (pairs,))
        noise = torch.randn(pairs, 3, size, size)
        a = abar[tt][:, None, None, None]
        xt = torch.cat([a.sqrt() * xw + (1 - a).sqrt() * noise, a.sqrt() * xl + (1 - a).sqrt() * noise], 0)
        t2 = torch.cat([tt, tt])
        eps = policy(xt, t2, ids2, bias2)
        with torch.no_grad():
            ref = reference(xt, t2, ids2, bias2)
        target = torch.cat([noise, noise], 0)
        mse = ((eps - target) ** 2).mean(dim=(1, 2, 3))
        rmse = ((ref - target) ** 2).mean(dim=(1, 2, 3))
        inside = -0.5 * 1000.0 * ((mse[:pairs] - mse[pairs:]) - (rmse[:pairs] - rmse[pairs:]))
        loss = F.softplus(-inside).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        loss.item()

    per_image = flops["unetForwardPerImage"] + flops["textForwardPerPrompt"]
    timing = timed(train_step, min_s, lambda: warm_up(train_step))
    training = measurement(timing, pairs, pairs * 2 * (3 * per_image + per_image))

    # ε-MSE training (pretraining, SFT): forward + backward of the policy on each image, AdamW.
    images = spec["trainImages"]
    x0 = torch.rand(images, 3, size, size) * 2 - 1
    ids1, bias1 = prompts(spec, images, 3)
    opt_eps = torch.optim.AdamW(policy.parameters(), lr=1e-5, weight_decay=0.01)

    def eps_step():
        tt = torch.randint(0, 1000, (images,))
        noise = torch.randn(images, 3, size, size)
        a = abar[tt][:, None, None, None]
        eps = policy(a.sqrt() * x0 + (1 - a).sqrt() * noise, tt, ids1, bias1)
        loss = ((eps - noise) ** 2).mean()
        opt_eps.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt_eps.step()
        loss.item()

    timing = timed(eps_step, min_s, lambda: warm_up(eps_step))
    eps_training = measurement(timing, images, images * 3 * per_image)

    result = {
        "backend": "pytorch",
        "threads": torch.get_num_threads(),
        "torchVersion": torch.__version__,
        "params": {"unet": got["unet"], "text": got["text"], "total": got["unet"] + got["text"]},
        "forward": forward,
        "sampling": sampling,
        "improver": improver_m,
        "training": training,
        "epsTraining": eps_training,
        "loadBefore": load_before,
        "loadAfter": list(os.getloadavg()),
    }
    print("BENCH_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
