#!/usr/bin/env python3
"""Independent reference of the shapes-world oracle reward and the Vendi score (docs/architecture.md).

Written from the design text with numpy, not from the TypeScript, so that a test can check that the two
agree (to 1e-4) on many images.

Usage:
    oracle_reference.py IMAGES.f32 REQUEST.json

IMAGES.f32 holds n images as little-endian float32, NHWC, H = W = size, RGB.
REQUEST.json is {"n": n, "size": S, "prompts": [n strings], "vendi_groups": [[image indices], ...]}.
Prints {"scores": [{reward, color, bg, shape, size, center, clean} per image],
        "vendi": [score per group], "errors": [null or message per image]} as JSON.
"""

import json
import sys

import numpy as np

RADIUS = {"small": 0.18, "medium": 0.28, "large": 0.38}
FILL = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5}
COLORS = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.8, 0.2),
    "blue": (0.15, 0.3, 0.95),
    "yellow": (0.95, 0.9, 0.1),
    "magenta": (0.9, 0.1, 0.9),
    "cyan": (0.1, 0.9, 0.9),
    "orange": (1.0, 0.55, 0.0),
    "white": (1.0, 1.0, 1.0),
}
BACKGROUNDS = {
    "black": (0.0, 0.0, 0.0),
    "gray": (0.5, 0.5, 0.5),
    "navy": (0.05, 0.05, 0.35),
    "white": (1.0, 1.0, 1.0),
    "beige": (0.96, 0.96, 0.86),
}


def parse_prompt(prompt):
    """'a {size} {color} {shape} on a {bg} background' -> (size, color, shape, bg); ValueError outside the grammar."""
    w = prompt.strip().lower().split()
    if len(w) != 8 or w[0] != "a" or w[4] != "on" or w[5] != "a" or w[7] != "background":
        raise ValueError("not of the form 'a SIZE COLOR SHAPE on a BG background': %r" % prompt)
    size, color, shape, bg = w[1], w[2], w[3], w[6]
    if size not in RADIUS or color not in COLORS or shape not in FILL or bg not in BACKGROUNDS:
        raise ValueError("unknown word in %r" % prompt)
    contrast = np.linalg.norm(np.array(COLORS[color]) - np.array(BACKGROUNDS[bg])) / np.sqrt(3)
    if contrast < 0.4:
        raise ValueError("%s on %s is below the contrast threshold" % (color, bg))
    return size, color, shape, bg


def oracle(x, prompt):
    """R(x, prompt) and its components for an S x S x 3 image x."""
    x = np.asarray(x, dtype=np.float64)
    s = x.shape[0]
    assert x.shape == (s, s, 3), x.shape
    size, color, shape, bg_name = parse_prompt(prompt)
    bg = np.array(BACKGROUNDS[bg_name])
    col = np.array(COLORS[color])

    d = np.linalg.norm(x - bg, axis=-1) / np.sqrt(3)
    m = np.clip((d - 0.15) / 0.2, 0.0, 1.0)

    ring = np.ones((s, s), dtype=bool)
    ring[1:-1, 1:-1] = False
    bg_score = 1.0 - d[ring].mean()

    total = m.sum()
    out = {"bg": float(bg_score), "color": 0.0, "center": 0.0, "size": 0.0, "shape": 0.0, "clean": 0.0}
    if total >= 1:
        cbar = (m[:, :, None] * x).sum(axis=(0, 1)) / total
        out["color"] = float(1.0 - np.linalg.norm(cbar - col) / np.sqrt(3))

        centres = (np.arange(s) + 0.5) / s
        mu = np.array([(m * centres[:, None]).sum() / total, (m * centres[None, :]).sum() / total])
        out["center"] = float(1.0 - min(1.0, np.linalg.norm(mu - 0.5) / 0.5))

        area = total / s**2
        a_star = np.pi * RADIUS[size] ** 2
        out["size"] = float(min(area / a_star, a_star / area))

        h = m.max(axis=1).sum()
        w = m.max(axis=0).sum()
        f = total / (h * w)
        out["shape"] = float(np.exp(-(((f - FILL[shape]) / 0.15) ** 2)))

        one = m == 1.0
        interior = np.zeros((s, s), dtype=bool)
        interior[1:-1, 1:-1] = (
            one[1:-1, 1:-1] & one[:-2, 1:-1] & one[2:, 1:-1] & one[1:-1, :-2] & one[1:-1, 2:]
        )
        if interior.any():
            spread = x[interior].std(axis=0).mean()
            out["clean"] = float(1.0 - min(1.0, spread / 0.1))

    out["reward"] = float(
        0.20 * out["color"]
        + 0.15 * out["bg"]
        + 0.20 * out["shape"]
        + 0.15 * out["size"]
        + 0.15 * out["center"]
        + 0.15 * out["clean"]
    )
    return out


def vendi(images):
    """Vendi score of images (n, H, W, 3)."""
    n = images.shape[0]
    e = images.reshape(n, -1).astype(np.float64) - 0.5
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    e = e / np.where(norms > 0, norms, 1.0)
    k = e @ e.T
    lam = np.clip(np.linalg.eigvalsh(k / n), 0.0, None)
    lam = lam[lam > 0]
    return float(np.exp(-(lam * np.log(lam)).sum()))


def main():
    images_path, request_path = sys.argv[1], sys.argv[2]
    with open(request_path) as fh:
        req = json.load(fh)
    n, s = req["n"], req["size"]
    images = np.fromfile(images_path, dtype="<f4").reshape(n, s, s, 3)
    scores, errors = [], []
    for i, prompt in enumerate(req["prompts"]):
        try:
            scores.append(oracle(images[i], prompt))
            errors.append(None)
        except ValueError as e:
            scores.append(None)
            errors.append(str(e))
    groups = [vendi(images[np.array(g, dtype=int)]) for g in req.get("vendi_groups", [])]
    json.dump({"scores": scores, "vendi": groups, "errors": errors}, sys.stdout)


if __name__ == "__main__":
    main()
