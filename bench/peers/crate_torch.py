#!/usr/bin/env python3
"""crate_torch.py: the PyTorch peer for the training-step benchmark. A self-contained rewrite of
the authors' CRATE classifier (Ma-Lab-Berkeley/CRATE model/crate.py: Attention with a shared qkv,
FeedForward = one ISTA step, PreNorm, Transformer, CRATE) with einops replaced by reshape/permute,
run as one AdamW training step per iteration (forward, cross-entropy with label smoothing,
backward, step). CPU: f32 with the given thread count. CUDA (--device cuda): f32 (TF32 off), or
bf16 autocast with f32 master weights (--amp, as torch.autocast does it), eager or torch.compile
(--compile), attention the authors' way (matmul-softmax) or through F.scaled_dot_product_attention
(--attention sdpa); steps are timed with torch.cuda.synchronize() around each. Prints one JSON line.

  /usr/bin/python3 bench/peers/crate_torch.py --threads 2 --batch 32 --image 32 --patch 4
  python3 bench/peers/crate_torch.py --device cuda --image 224 --patch 16 --dim 768 --heads 12 --amp
(Debian's python3-torch 1.13 with libopenblas0-pthread on the CPU; torch.compile needs torch >= 2.)
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class PreNorm(nn.Module):
    def __init__(self, dim, fn):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.norm(x))


class FeedForward(nn.Module):  # the ISTA step, as in model/crate.py
    def __init__(self, dim, step_size=0.1, lambd=0.1):
        super().__init__()
        self.weight = nn.Parameter(torch.Tensor(dim, dim))
        nn.init.kaiming_uniform_(self.weight)
        self.step_size = step_size
        self.lambd = lambd

    def forward(self, x):
        x1 = F.linear(x, self.weight, bias=None)
        grad_1 = F.linear(x1, self.weight.t(), bias=None)
        grad_2 = F.linear(x, self.weight.t(), bias=None)
        grad_update = self.step_size * (grad_2 - grad_1) - self.step_size * self.lambd
        return F.relu(x + grad_update)


class Attention(nn.Module):  # MSSA with Q = K = V = qkv(x)
    sdpa = False  # set by main(): F.scaled_dot_product_attention instead of matmul-softmax

    def __init__(self, dim, heads, dim_head):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.attend = nn.Softmax(dim=-1)
        self.qkv = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x):
        b, n, _ = x.shape
        w = self.qkv(x).reshape(b, n, self.heads, -1).permute(0, 2, 1, 3)
        if Attention.sdpa:
            out = F.scaled_dot_product_attention(w, w, w)  # default scale = dim_head^-0.5, as here
            return self.to_out(out.permute(0, 2, 1, 3).reshape(b, n, -1))
        dots = torch.matmul(w, w.transpose(-1, -2)) * self.scale
        out = torch.matmul(self.attend(dots), w)
        return self.to_out(out.permute(0, 2, 1, 3).reshape(b, n, -1))


class Transformer(nn.Module):
    def __init__(self, dim, depth, heads, dim_head):
        super().__init__()
        self.layers = nn.ModuleList(
            [nn.ModuleList([PreNorm(dim, Attention(dim, heads, dim_head)), PreNorm(dim, FeedForward(dim))]) for _ in range(depth)]
        )

    def forward(self, x):
        for attn, ff in self.layers:
            x = x + attn(x)  # Z^{l+1/2} = Z^l + MSSA(LN Z^l)
            x = ff(x)  # Z^{l+1} = ISTA(LN Z^{l+1/2}), no residual
        return x


class CRATE(nn.Module):
    def __init__(self, image, patch, classes, dim, depth, heads, dim_head, channels=3):
        super().__init__()
        self.patch = patch
        n = (image // patch) ** 2
        pdim = channels * patch * patch
        self.to_patch_embedding = nn.Sequential(nn.Identity(), nn.LayerNorm(pdim), nn.Linear(pdim, dim), nn.LayerNorm(dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, n + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.transformer = Transformer(dim, depth, heads, dim_head)
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, classes))

    def forward(self, img):
        b, c, h, w = img.shape
        p = self.patch
        x = img.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)
        x = self.to_patch_embedding(x)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1) + self.pos_embedding
        x = self.transformer(x)
        return self.mlp_head(x[:, 0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--image", type=int, default=32)
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--dim-head", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (torch >= 2)")
    ap.add_argument("--attention", default="matmul", choices=["matmul", "sdpa"])
    a = ap.parse_args()
    dev = torch.device(a.device)
    if a.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("crate_torch.py: --device cuda but torch.cuda.is_available() is False")
        torch.backends.cuda.matmul.allow_tf32 = False  # f32 means f32, as ours
        torch.backends.cudnn.allow_tf32 = False
    else:
        torch.set_num_threads(a.threads)
    if a.attention == "sdpa" and not hasattr(F, "scaled_dot_product_attention"):
        raise SystemExit("crate_torch.py: --attention sdpa needs torch >= 2")
    Attention.sdpa = a.attention == "sdpa"
    torch.manual_seed(0)
    model = CRATE(a.image, a.patch, a.classes, a.dim, a.depth, a.heads, a.dim_head).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    fwd = torch.compile(model) if a.compile else model
    x = torch.randn(a.batch, 3, a.image, a.image, device=dev)
    y = torch.randint(0, a.classes, (a.batch,), device=dev)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    times = []
    for i in range(a.steps + a.warmup):
        sync()
        t0 = time.perf_counter()
        with torch.autocast(device_type=a.device, dtype=torch.bfloat16, enabled=a.amp):
            loss = F.cross_entropy(fwd(x), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        if i >= a.warmup:
            times.append((time.perf_counter() - t0) * 1000)
    out = {
        "peer": "pytorch-" + ("compile" if a.compile else "eager") + ("-sdpa" if Attention.sdpa else ""),
        "torch": torch.__version__, "device": a.device, "amp": a.amp, "threads": a.threads,
        "blas": "openblas" if "openblas" in torch.__config__.show().lower() else "other",
        "batch": a.batch, "image": a.image, "patch": a.patch, "params": sum(p.numel() for p in model.parameters()),
        "ms_median": statistics.median(times), "ms_min": min(times), "loss": float(loss),
    }
    if a.device == "cuda":
        out["gpu"] = torch.cuda.get_device_name()
        out["blas"] = "cublas"
        out["max_memory_bytes"] = torch.cuda.max_memory_allocated()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
