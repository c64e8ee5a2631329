"""idpo's PyTorch twin for `npm run bench:parity`: the same UNet and text encoder (bench/torch_unet.py),
idpo's weights read and written through one name/layout map, and the training recipe and DDIM sampler
written independently of libs/diffusion.

Subcommands (each reads one JSON spec; arrays travel as raw little-endian float32/int32 files):

  eps SPEC     ε of a checkpoint for given x_t, t, tokens (and condition images): the round-trip check.
  train SPEC   ε-MSE pretraining with idpo's recipe (AdamW, linear warmup, global-norm clip, prompt dropout,
               EMA with diffusers' warmup) on the examples idpo's Trainer would draw, step by step.
  sample SPEC  DDIM (η = 0) with classifier-free guidance from given initial noise; x̂₀ is clipped and ε̂
               recomputed from it, as DDIM requires.

Usage: python3 bench/torch_twin.py <eps|train|sample> SPEC.json   (prints one line: TWIN_RESULT <json>)
"""

import json
import math
import os
import re
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_unet import Model  # noqa: E402


# ---------------------------------------------------------------------------------------------------
# safetensors (F32 only, as idpo writes them)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf8"))
    meta = header.pop("__metadata__", {})
    data = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} is {info['dtype']}, expected F32")
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(info["shape"]).copy()
    return out, meta


def write_safetensors(path, tensors, meta=None):
    header = {}
    offset = 0
    blobs = []
    for name, arr in tensors.items():
        buf = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(buf)]}
        offset += len(buf)
        blobs.append(buf)
    if meta:
        header["__metadata__"] = meta
    text = json.dumps(header).encode("utf8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------------------------------------------
# The one name/layout map between idpo's parameters and the twin's modules.
#
# idpo (tfjs, NHWC): conv kernels [kh, kw, cin, cout]; dense weights [in, out]; a ResBlock's skip is a
# per-pixel dense [cin, cout]; norms have g (scale) and b (shift). The twin (NCHW): conv [cout, cin, kh, kw],
# Linear [out, in], the skip a 1×1 conv.

_BLOCK = re.compile(r"^unet\.(down|up)\.(\d+)\.(res|attn)\.(\d+)\.(.+)$")
_SAMPLE = re.compile(r"^unet\.(down|up)\.(\d+)\.(downsample|upsample)\.(w|b)$")
_MID = re.compile(r"^unet\.mid\.(res\.(\d+)|attn)\.(.+)$")
_LEAF = {"w": "weight", "b": "bias", "g": "weight"}


def torch_name(name):
    """(twin parameter name, layout) of idpo parameter `name`; layout is conv, dense, skip or same."""

    def leaf(module, rest):
        sub, kind = rest.rsplit(".", 1)
        if sub.startswith("conv"):
            layout = "conv" if kind == "w" else "same"
        elif sub == "skip":
            layout = "skip" if kind == "w" else "same"
        elif sub.startswith("norm"):
            layout = "same"
        else:
            layout = "dense" if kind == "w" else "same"
        return f"{module}.{sub}.{_LEAF[kind]}", layout

    if name in ("text.tok_emb",):
        return "text.tok_emb.weight", "same"
    if name == "text.pos_emb":
        return "text.pos_emb", "same"
    m = re.match(r"^text\.blocks\.(\d+)\.(ln1|ln2|qkv|proj|fc1|fc2)\.(w|b|g)$", name)
    if m:
        i, sub, kind = m.groups()
        layout = "dense" if kind == "w" else "same"
        return f"text.blocks.{i}.{sub}.{_LEAF[kind]}", layout
    m = re.match(r"^text\.ln_f\.(g|b)$", name)
    if m:
        return f"text.ln_f.{_LEAF[m.group(1)]}", "same"
    m = re.match(r"^unet\.time\.(fc1|fc2)\.(w|b)$", name)
    if m:
        return f"unet.time_{m.group(1)}.{_LEAF[m.group(2)]}", "dense" if m.group(2) == "w" else "same"
    m = re.match(r"^unet\.text_pool\.(w|b)$", name)
    if m:
        return f"unet.text_pool.{_LEAF[m.group(1)]}", "dense" if m.group(1) == "w" else "same"
    m = re.match(r"^unet\.(conv_in|conv_out)\.(w|b)$", name)
    if m:
        return f"unet.{m.group(1)}.{_LEAF[m.group(2)]}", "conv" if m.group(2) == "w" else "same"
    m = re.match(r"^unet\.norm_out\.(g|b)$", name)
    if m:
        return f"unet.norm_out.{_LEAF[m.group(1)]}", "same"
    m = _SAMPLE.match(name)
    if m:
        side, i, what, kind = m.groups()
        # The downsample is ZeroPad2d + Conv2d (index 1 of a Sequential); the upsample a plain conv.
        module = f"unet.blocks.{side}_{i}_{what}" + (".1" if what == "downsample" else "")
        return f"{module}.{_LEAF[kind]}", "conv" if kind == "w" else "same"
    m = _BLOCK.match(name)
    if m:
        side, i, kind, j, rest = m.groups()
        return leaf(f"unet.blocks.{side}_{i}_{kind}_{j}", rest)
    m = _MID.match(name)
    if m:
        module = f"unet.blocks.mid_res_{m.group(2)}" if m.group(2) is not None else "unet.blocks.mid_attn"
        return leaf(module, m.group(3))
    raise KeyError(f"no twin parameter for idpo parameter {name}")


def to_twin(arr, layout):
    if layout == "conv":
        return arr.transpose(3, 2, 0, 1)
    if layout == "dense":
        return arr.T
    if layout == "skip":
        return arr.T[:, :, None, None]
    return arr


def from_twin(arr, layout):
    if layout == "conv":
        return arr.transpose(2, 3, 1, 0)
    if layout == "dense":
        return arr.T
    if layout == "skip":
        return arr[:, :, 0, 0].T
    return arr


def spec_of(config):
    """The twin's spec from an idpo DiffusionConfig (its unet/text sections use the same field names)."""
    text = dict(config["text"])
    text.setdefault("vocabSize", len(text["vocab"]))
    return {"unet": dict(config["unet"]), "text": text}


def load_twin(path):
    """A twin Model with the weights of idpo checkpoint `path` (safetensors with its config metadata)."""
    tensors, meta = read_safetensors(path)
    config = json.loads(meta["config"])
    model = Model(spec_of(config), cond_channels=config["unet"].get("condChannels", 0))
    state = model.state_dict()
    seen = set()
    for name, arr in tensors.items():
        tname, layout = torch_name(name)
        if tname not in state:
            raise KeyError(f"{path}: {name} maps to {tname}, which the twin does not have")
        value = torch.from_numpy(np.ascontiguousarray(to_twin(arr, layout)))
        if tuple(value.shape) != tuple(state[tname].shape):
            raise ValueError(f"{name} → {tname}: shape {tuple(value.shape)} vs {tuple(state[tname].shape)}")
        state[tname] = value
        seen.add(tname)
    missing = set(state) - seen
    if missing:
        raise KeyError(f"{path}: the twin's {sorted(missing)[:5]} have no idpo weights")
    model.load_state_dict(state)
    return model, config, list(tensors.keys())


def twin_metadata(config):
    """What a twin-written file carries so that load_twin (and idpo's reader) knows its architecture."""
    kind = "improver" if config["unet"].get("condChannels", 0) > 0 else "policy"
    return {"config": json.dumps(config), "kind": kind, "written_by": "bench/torch_twin.py"}


def save_twin(model, names, path, meta=None):
    """Writes the twin's weights under idpo's names and layouts, in idpo's parameter order."""
    state = model.state_dict()
    out = {}
    for name in names:
        tname, layout = torch_name(name)
        out[name] = from_twin(state[tname].detach().numpy(), layout)
    write_safetensors(path, out, meta)


# ---------------------------------------------------------------------------------------------------


def f32(path, shape):
    return torch.from_numpy(np.fromfile(path, dtype="<f4").reshape(shape).copy())


def i32(path, shape):
    return torch.from_numpy(np.fromfile(path, dtype="<i4").reshape(shape).astype(np.int64))


def key_bias(mask):
    """idpo's additive key bias: 0 for real tokens, −1e9 for padding; the null prompt (no real token) is all 0."""
    null = mask.sum(1, keepdim=True) == 0
    keep = mask.bool() | null
    bias = torch.where(keep, torch.zeros_like(mask), torch.full_like(mask, -1e9))
    return bias[:, None, None, :]


def alphas_cumprod(T=1000):
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


def cmd_eps(spec):
    """ε for given inputs; with "resave", also writes the loaded weights back through the map (round trip)."""
    model, config, names = load_twin(spec["checkpoint"])
    n, s = spec["n"], config["unet"]["imageSize"]
    length = config["text"]["maxLength"]
    x = f32(spec["x"], (n, s, s, 3)).permute(0, 3, 1, 2)
    t = torch.tensor(spec["t"], dtype=torch.long)
    ids = i32(spec["ids"], (n, length))
    mask = f32(spec["mask"], (n, length))
    cond = None
    if spec.get("cond"):
        cond = f32(spec["cond"], (n, s, s, 3)).permute(0, 3, 1, 2)
    with torch.no_grad():
        eps = model(x, t, ids, key_bias(mask), cond)
    eps.permute(0, 2, 3, 1).contiguous().numpy().astype("<f4").tofile(spec["out"])
    if spec.get("resave"):
        save_twin(model, names, spec["resave"], twin_metadata(config))
    return {"n": n}


def lr_at(step, peak, warmup):
    return peak * (step + 1) / warmup if step < warmup else peak


def cmd_train(spec):
    """ε-MSE pretraining; each step's examples are given by idpo's data order (spec["order"])."""
    torch.manual_seed(spec["seed"])
    torch.set_num_threads(spec.get("threads", 1))
    model, config, names = load_twin(spec["init"])
    s, length = config["unet"]["imageSize"], config["text"]["maxLength"]
    n_images = spec["images_count"]
    images = f32(spec["images"], (n_images, s, s, 3)).permute(0, 3, 1, 2).contiguous() * 2 - 1
    ids = i32(spec["ids"], (n_images, length))
    mask = f32(spec["mask"], (n_images, length))
    steps, batch = spec["steps"], spec["batch"]
    order = i32(spec["order"], (steps, batch))
    ab = alphas_cumprod().float()
    opt = torch.optim.AdamW(
        model.parameters(), lr=spec["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=spec.get("weight_decay", 0.0)
    )
    ema = [p.detach().clone() for p in model.parameters()]
    losses = []
    started = time.time()
    for step in range(steps):
        idx = order[step]
        x0 = images[idx]
        m = mask[idx].clone()
        drop = torch.rand(batch) < spec["prompt_dropout"]
        m[drop] = 0
        tok = ids[idx].clone()
        tok[drop] = 0
        t = torch.randint(0, 1000, (batch,))
        noise = torch.randn_like(x0)
        a = ab[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(model(xt, t, tok, key_bias(m)), noise)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, spec["lr"], spec["warmup"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if spec.get("max_grad_norm", 0) > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec["max_grad_norm"])
        opt.step()
        if spec.get("ema", 0) > 0:
            d = min(spec["ema"], (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in zip(ema, model.parameters()):
                    e.mul_(d).add_(p.detach(), alpha=1 - d)
        losses.append(loss.item())
        if (step + 1) % max(1, steps // 20) == 0 or step + 1 == steps:
            print(
                json.dumps({"progress": step + 1, "steps": steps, "loss": loss.item(), "s": time.time() - started}),
                flush=True,
            )
    if spec.get("ema", 0) > 0:
        with torch.no_grad():
            for e, p in zip(ema, model.parameters()):
                p.copy_(e)
    save_twin(model, names, spec["out"], twin_metadata(config))
    return {"losses": losses, "seconds": time.time() - started}


def cmd_sample(spec):
    torch.set_num_threads(spec.get("threads", 1))
    model, config, _ = load_twin(spec["checkpoint"])
    n, s, length = spec["n"], config["unet"]["imageSize"], config["text"]["maxLength"]
    x = f32(spec["noise"], (n, s, s, 3)).permute(0, 3, 1, 2).contiguous()
    ids = i32(spec["ids"], (n, length))
    mask = f32(spec["mask"], (n, length))
    g, steps = spec["guidance"], spec["steps"]
    ab = alphas_cumprod().float()
    ts = [round(1000 - i * 1000 / steps) - 1 for i in range(steps)]
    null_ids = torch.zeros_like(ids)
    null_mask = torch.zeros_like(mask)
    out = []
    chunk = spec.get("batch", 64)
    with torch.no_grad():
        for a in range(0, n, chunk):
            xc = x[a : a + chunk]
            k = xc.shape[0]
            tok = torch.cat([ids[a : a + chunk], null_ids[a : a + chunk]])
            bias = key_bias(torch.cat([mask[a : a + chunk], null_mask[a : a + chunk]]))
            text = model.text(tok, bias)
            for i, t in enumerate(ts):
                prev = ts[i + 1] if i + 1 < len(ts) else -1
                e = model.unet(torch.cat([xc, xc]), torch.full((2 * k,), t, dtype=torch.long), text, bias)
                c, u = e.chunk(2)
                eps = u + g * (c - u)
                at = ab[t]
                ap = ab[prev] if prev >= 0 else torch.tensor(1.0)
                x0 = ((xc - (1 - at).sqrt() * eps) / at.sqrt()).clamp(-1, 1)
                eps = (xc - at.sqrt() * x0) / (1 - at).sqrt()
                xc = ap.sqrt() * x0 + (1 - ap).sqrt() * eps
            out.append(xc)
    img = (torch.cat(out) * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).contiguous()
    img.numpy().astype("<f4").tofile(spec["out"])
    return {"n": n}


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    spec = json.load(open(path))
    fn = {"eps": cmd_eps, "train": cmd_train, "sample": cmd_sample}.get(cmd)
    if fn is None:
        raise SystemExit(f"unknown subcommand {cmd!r} (expected eps, train or sample)")
    print("TWIN_RESULT " + json.dumps(fn(spec)), flush=True)


if __name__ == "__main__":
    main()
