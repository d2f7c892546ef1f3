#!/usr/bin/env python3
"""torch_parity_fixture.py: writes the PyTorch-parity fixtures for the CRATE classifier.

A small CRATE as the authors define it (Ma-Lab-Berkeley/CRATE model/crate.py; the module code is
bench/peers/crate_torch.py, einops replaced by reshape/permute) is built in float64 and float32,
run on a batch with cross-entropy (label smoothing 0.1) and backward; every parameter (by its
PyTorch name), the input, labels, logits, loss and every parameter gradient (`grad.<name>`) are
written to test/fixtures/crate_parity_{f64,f32}.safetensors with a tiny safetensors writer (no
safetensors package on Debian). test/torch_parity.test.ts loads them; CI needs no torch.

  apt-get install python3-torch && /usr/bin/python3 scripts/torch_parity_fixture.py
"""
import json
import os
import struct
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench", "peers"))
from crate_torch import CRATE  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures")
CFG = dict(image=8, patch=4, classes=5, dim=16, depth=2, heads=2, dim_head=8, channels=3)
DT = {torch.float64: "F64", torch.float32: "F32", torch.int64: "I64", torch.int32: "I32"}


def save_safetensors(path, tensors, metadata):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        b = t.numpy().tobytes()
        header[name] = {"dtype": DT[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def build(dtype):
    torch.manual_seed(0)
    model = CRATE(CFG["image"], CFG["patch"], CFG["classes"], CFG["dim"], CFG["depth"], CFG["heads"], CFG["dim_head"],
                  CFG["channels"]).to(dtype)
    # the authors' mlp_head/to_patch_embedding keys: Sequential indices; our peer keeps them
    x = torch.randn(4, CFG["channels"], CFG["image"], CFG["image"], dtype=dtype)
    y = torch.tensor([0, 3, 1, 4])
    logits = model(x)
    loss = F.cross_entropy(logits, y, label_smoothing=0.1)
    loss.backward()
    out = {}
    for n, p in model.named_parameters():
        key = n  # the authors' names, e.g. transformer.layers.0.0.fn.qkv.weight
        out[key] = p
        out["grad." + key] = p.grad
    out["input"] = x
    out["labels"] = y.to(torch.int32)
    out["logits"] = logits
    out["loss"] = loss.reshape(1)
    meta = {"format": "pt", "torch": torch.__version__, "config": json.dumps(CFG), "label_smoothing": "0.1"}
    return out, meta


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for dtype, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
        t, m = build(dtype)
        p = os.path.join(OUT, f"crate_parity_{tag}.safetensors")
        save_safetensors(p, t, m)
        print(p, os.path.getsize(p), "bytes")
