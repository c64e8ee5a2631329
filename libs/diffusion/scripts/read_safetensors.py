#!/usr/bin/env python3
"""Independent safetensors reader used by the checkpoint tests (standard library, numpy when present).

Usage: read_safetensors.py FILE
Prints JSON: the __metadata__, the sha256 of the data section, and per tensor its dtype, shape,
element count, sum, sum of squares and first values, all computed here from the raw bytes.
"""
import hashlib
import json
import struct
import sys

try:
    import numpy as np
except ImportError:  # the stdlib path below reads the same bytes
    np = None


def main(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    if n % 8 != 0:
        raise SystemExit(f"header length {n} is not a multiple of 8")
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    data = raw[8 + n :]
    meta = header.pop("__metadata__", {})
    for k, v in meta.items():
        if not isinstance(v, str):
            raise SystemExit(f"metadata {k} is not a string")
    spans = sorted((info["data_offsets"][0], info["data_offsets"][1], name) for name, info in header.items())
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            raise SystemExit(f"tensor {name} starts at {begin}, expected {pos}")
        pos = end
    if pos != len(data):
        raise SystemExit(f"tensors cover {pos} bytes, data section has {len(data)}")
    out = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise SystemExit(f"tensor {name} has dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        count = 1
        for d in info["shape"]:
            count *= d
        if end - begin != 4 * count:
            raise SystemExit(f"tensor {name} has {end - begin} bytes for shape {info['shape']}")
        if np is not None:
            values = np.frombuffer(data[begin:end], dtype="<f4").astype(np.float64).reshape(info["shape"])
            flat = values.reshape(-1)
            total, squares, first = float(flat.sum()), float((flat * flat).sum()), [float(x) for x in flat[:3]]
        else:
            flat = struct.unpack(f"<{count}f", data[begin:end])
            total, squares, first = sum(flat), sum(x * x for x in flat), list(flat[:3])
        out[name] = {"dtype": info["dtype"], "shape": info["shape"], "count": count, "sum": total, "sumsq": squares, "first": first}
    print(json.dumps({"metadata": meta, "sha256": hashlib.sha256(data).hexdigest(), "numpy": np is not None, "tensors": out}))


if __name__ == "__main__":
    main(sys.argv[1])
