#!/usr/bin/env python3
"""ops_torch.py: the PyTorch peer for the CRATE op benchmarks (bench/ops_peers.mjs).

Times fwd+bwd of each CRATE op written the way the authors write it in PyTorch (model/crate.py,
tost.py, vis_utils/coding_rate.py), with the same shapes, dtype (f32) and thread count as our
side. Input: a JSON list of cases on argv[1]; output: one JSON line per case on stdout.
Timing: warm-up runs, then the median and min of the timed repeats (ms), perf_counter.
    python3 bench/peers/ops_torch.py '[{"op":"mssa","B":8,"N":65,"H":6,"p":64}]' --threads 2
"""
import json
import sys
import time

import torch
import torch.nn.functional as F


def mssa(case):
    B, N, H, p = case["B"], case["N"], case["H"], case["p"]
    P = torch.randn(B, N, H * p, requires_grad=True)
    scale = p ** -0.5

    def run():
        w = P.view(B, N, H, p).transpose(1, 2)  # (B, H, N, p), Q = K = V
        attn = torch.softmax(torch.matmul(w, w.transpose(-1, -2)) * scale, dim=-1)
        out = torch.matmul(attn, w).transpose(1, 2).reshape(B, N, H * p)
        out.backward(torch.ones_like(out))
        P.grad = None

    runs = {"matmul-softmax": run}
    if hasattr(F, "scaled_dot_product_attention"):

        def sdpa():
            w = P.view(B, N, H, p).transpose(1, 2)
            out = F.scaled_dot_product_attention(w, w, w).transpose(1, 2).reshape(B, N, H * p)
            out.backward(torch.ones_like(out))
            P.grad = None

        runs["sdpa"] = sdpa
    return runs


def ista(case):
    T, d = case["T"], case["d"]
    x = torch.randn(T, d, requires_grad=True)
    W = (0.05 * torch.randn(d, d)).requires_grad_()
    eta, lam = 0.1, 0.1

    def run():  # model/crate.py FeedForward
        x1 = F.linear(x, W, bias=None)
        grad_1 = F.linear(x1, W.t(), bias=None)
        grad_2 = F.linear(x, W.t(), bias=None)
        out = F.relu(x + eta * (grad_2 - grad_1) - eta * lam)
        out.backward(torch.ones_like(out))
        x.grad = None
        W.grad = None

    return {"authors-eager": run}


def coding_rate(case):
    b, m, n = case["b"], case["m"], case["n"]
    Z = torch.randn(b, m, n, requires_grad=True)
    alpha = 0.05
    k = min(m, n)
    eye = torch.eye(k)

    def gram():
        return Z @ Z.transpose(-1, -2) if m <= n else Z.transpose(-1, -2) @ Z

    def chol():  # ½ logdet via Cholesky, Gram on the smaller side
        L = torch.linalg.cholesky(eye + alpha * gram())
        out = torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum()
        out.backward()
        Z.grad = None

    def logdet():  # the authors' vis_utils form: torch.logdet
        out = 0.5 * torch.logdet(eye + alpha * gram()).sum()
        out.backward()
        Z.grad = None

    return {"cholesky": chol, "logdet": logdet}


def tssa(case):
    B, N, H, p = case["B"], case["N"], case["H"], case["p"]
    X = torch.randn(B, N, H * p, requires_grad=True)
    temp = torch.ones(H, 1, requires_grad=True)

    def run():  # tost.py AttentionTSSA after qkv
        w = X.view(B, N, H, p).transpose(1, 2)  # (B, H, N, p)
        w_normed = F.normalize(w, dim=-2)
        w_sq = w_normed ** 2
        Pi = F.softmax(torch.sum(w_sq, dim=-1) * temp, dim=1)  # (B, H, N)
        dots = torch.matmul((Pi / (Pi.sum(dim=-1, keepdim=True) + 1e-8)).unsqueeze(-2), w ** 2)
        attn = 1.0 / (1 + dots)
        out = -torch.mul(w.mul(Pi.unsqueeze(-1)), attn)
        out = out.transpose(1, 2).reshape(B, N, H * p)
        out.backward(torch.ones_like(out))
        X.grad = None
        temp.grad = None

    return {"authors-eager": run}


def layer_norm(case):
    R, D = case["R"], case["D"]
    x = torch.randn(R, D, requires_grad=True)
    w = torch.ones(D, requires_grad=True)
    b = torch.zeros(D, requires_grad=True)

    def run():
        out = F.layer_norm(x, (D,), w, b, 1e-5)
        out.backward(torch.ones_like(out))
        x.grad = w.grad = b.grad = None

    return {"F.layer_norm": run}


MAKERS = {"mssa": mssa, "ista": ista, "codingRate": coding_rate, "tssa": tssa, "layerNorm": layer_norm}


def time_it(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    t.sort()
    return {"median": t[len(t) // 2], "min": t[0], "reps": reps}


def main():
    cases = json.loads(sys.argv[1])
    threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 2
    reps = int(sys.argv[sys.argv.index("--reps") + 1]) if "--reps" in sys.argv else 7
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    for case in cases:
        for variant, fn in MAKERS[case["op"]](case).items():
            r = time_it(fn, 2, reps)
            print(json.dumps({**case, "variant": variant, "torch": torch.__version__, **r}), flush=True)


if __name__ == "__main__":
    main()
