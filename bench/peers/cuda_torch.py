#!/usr/bin/env python3
"""cuda_torch.py: the CRATE CUDA kernels (libcrate_cuda.so, C ABI of native/include/crate/crate_cuda.h,
loaded with ctypes and run on PyTorch CUDA tensors' data_ptr() and torch's current stream) against
PyTorch on the same GPU, in the same process.

1. Correctness: every kernel against a torch reference written the authors' way (model/crate.py,
   tost.py, vis_utils/coding_rate.py: MSSA as matmul-softmax, ISTA as FeedForward, logdet via
   torch.linalg.cholesky, TSSA as AttentionTSSA, F.layer_norm, softmax, F.cross_entropy), run in
   f64 as the ground truth. FlashAttention's criterion per output, saved statistics and gradients
   included:  max|ours - f64| <= 2 * max|torch_f32 - f64| + floor * max|f64|  (torch_f32: the same
   reference in f32 with TF32 off). GEMMs element-wise against the f64 product (see gemm_check).
2. Timing, fwd+bwd: CUDA events around the work only, warm-up runs, median (and min) of the
   repeats, the L2 cache flushed between repeats by writing a 256 MiB buffer. Peers: MSSA vs
   F.scaled_dot_product_attention(q=k=v) and matmul-softmax; ISTA vs the authors' FeedForward;
   coding rate vs torch.linalg.cholesky (f32, f64) and torch.logdet; GEMM vs torch.matmul
   (cuBLAS) in f32, TF32, bf16 and f16; LayerNorm vs F.layer_norm; TSSA vs the authors' AttentionTSSA;
   cross-entropy vs F.cross_entropy; CRATE-alpha's overcomplete ISTA and causal CRATE's tied ISTA vs
   the authors' formulas; causal TSSA vs ToST's CausalSelfAttention_TSSA. Napkin FLOPs and bytes
   give TFLOP/s, GB/s and % of the device's peak (table for A100/H100/H200 SXM/PCIe/NVL dense TF32/BF16 and HBM; otherwise from
   SM count x clock and the memory clock x bus width read from the driver).

Writes <outdir>/<name>.jsonl and <name>.md (device, driver, torch, commit, exact command).
Exits cleanly, saying why, when the library is missing, torch is not installed or has no CUDA
(exit 0; with --strict exit 2); exit 1 when a correctness check fails.

    python3 bench/peers/cuda_torch.py [--lib build/Release/libcrate_cuda.so] [--name cuda-ops-vs-torch]
        [--outdir bench/results] [--quick] [--reps 20] [--warmup 3] [--check-only | --bench-only]
        [--strict] [--host-selftest]

--host-selftest runs every path on the CPU against the host-memory stand-in library of
test/cuda/host_backend.cc (pass it with --lib): for developing this script without a GPU.
"""
import argparse
import ctypes
import datetime
import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

P, I64, F32, F64, INT, SIZE = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_double, ctypes.c_int, ctypes.c_size_t


class MemStats(ctypes.Structure):
    _fields_ = [
        ("allocated_bytes", ctypes.c_size_t),
        ("cached_bytes", ctypes.c_size_t),
        ("peak_allocated_bytes", ctypes.c_size_t),
        ("device_free_bytes", ctypes.c_size_t),
        ("device_total_bytes", ctypes.c_size_t),
        ("num_allocs", ctypes.c_int64),
        ("num_device_allocs", ctypes.c_int64),
        ("num_oom_retries", ctypes.c_int64),
        ("num_host_syncs", ctypes.c_int64),
    ]


DONE_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int)

# (restype, argtypes) of every entry point of crate_cuda.h, in header order.
SIGS = {
    "crate_cuda_last_error": (ctypes.c_char_p, []),
    "crate_cuda_status": (INT, []),
    "crate_cuda_init": (INT, [INT]),
    "crate_cuda_default_stream": (P, []),
    "crate_cuda_malloc": (INT, [ctypes.POINTER(P), SIZE, P]),
    "crate_cuda_free": (INT, [P, P]),
    "crate_cuda_empty_cache": (SIZE, []),
    "crate_cuda_memory_stats_get": (INT, [ctypes.POINTER(MemStats)]),
    "crate_cuda_memcpy": (INT, [P, P, SIZE, INT, P]),
    "crate_cuda_memcpy_d2h_async": (INT, [P, P, SIZE, P, DONE_CB, P]),
    "crate_cuda_synchronize": (INT, [P]),
    "crate_cuda_gemm_f32": (INT, [INT, INT, I64, I64, I64, F32, P, I64, P, I64, F32, P, I64, I64, I64, I64, I64, INT, P]),
    "crate_cuda_gemm_bf16": (INT, [INT, INT, I64, I64, I64, F32, P, I64, P, I64, F32, P, I64, I64, I64, I64, I64, P]),
    "crate_cuda_gemm_backend": (ctypes.c_char_p, []),
    "crate_cuda_gemm_force_own": (INT, [INT]),
    "crate_cuda_mssa_forward_f32": (INT, [P, P, P, I64, I64, I64, I64, F32, INT, P, P]),
    "crate_cuda_mssa_backward_f32": (INT, [P, P, P, P, P, I64, I64, I64, I64, F32, INT, P, P]),
    "crate_cuda_mssa_forward_bf16": (INT, [P, P, P, I64, I64, I64, I64, F32, INT, P, P]),
    "crate_cuda_mssa_backward_bf16": (INT, [P, P, P, P, P, I64, I64, I64, I64, F32, INT, P, P]),
    "crate_cuda_ista_forward_f32": (INT, [P, P, P, I64, I64, F32, F32, P]),
    "crate_cuda_ista_backward_f32": (INT, [P, P, P, P, P, P, I64, I64, F32, P]),
    "crate_cuda_ista_overcomplete_forward_f32": (INT, [P, P, P, P, P, P, P, I64, I64, I64, F32, F32, P]),
    "crate_cuda_ista_overcomplete_backward_f32": (INT, [P, P, P, P, P, P, P, P, P, P, I64, I64, I64, F32, P]),
    "crate_cuda_ista_tied_forward_f32": (INT, [P, P, P, P, P, P, I64, I64, I64, F32, F32, P]),
    "crate_cuda_ista_tied_backward_f32": (INT, [P, P, P, P, P, P, P, P, I64, I64, I64, F32, P]),
    "crate_cuda_logdet_gram_forward_f32": (INT, [P, P, P, I64, I64, I64, P, P]),
    "crate_cuda_logdet_gram_backward_f32": (INT, [P, P, P, P, I64, I64, I64, P, P]),
    "crate_cuda_logdet_gram_heads_forward_f32": (INT, [P, P, P, I64, I64, I64, I64, P, P]),
    "crate_cuda_logdet_gram_heads_backward_f32": (INT, [P, P, P, P, I64, I64, I64, I64, P, P]),
    "crate_cuda_logdet_gram_forward_bf16": (INT, [P, P, P, I64, I64, I64, P, P]),
    "crate_cuda_logdet_gram_backward_bf16": (INT, [P, P, P, P, I64, I64, I64, P, P]),
    "crate_cuda_logdet_gram_heads_forward_bf16": (INT, [P, P, P, I64, I64, I64, I64, P, P]),
    "crate_cuda_logdet_gram_heads_backward_bf16": (INT, [P, P, P, P, I64, I64, I64, I64, P, P]),
    "crate_cuda_tssa_forward_f32": (INT, [P, P, P, P, P, P, I64, I64, I64, I64, P]),
    "crate_cuda_tssa_backward_f32": (INT, [P, P, P, P, P, P, P, P, I64, I64, I64, I64, P]),
    "crate_cuda_tssa_causal_forward_f32": (INT, [P, P, P, P, P, I64, I64, I64, I64, I64, P]),
    "crate_cuda_tssa_causal_backward_f32": (INT, [P, P, P, P, P, P, P, I64, I64, I64, I64, I64, P]),
    "crate_cuda_tssa_forward_bf16": (INT, [P, P, P, P, P, P, I64, I64, I64, I64, P]),
    "crate_cuda_tssa_backward_bf16": (INT, [P, P, P, P, P, P, P, P, I64, I64, I64, I64, P]),
    "crate_cuda_tssa_causal_forward_bf16": (INT, [P, P, P, P, P, I64, I64, I64, I64, I64, P]),
    "crate_cuda_tssa_causal_backward_bf16": (INT, [P, P, P, P, P, P, P, I64, I64, I64, I64, I64, P]),
    "crate_cuda_layernorm_forward_f32": (INT, [P, P, P, P, P, P, I64, I64, F64, P]),
    "crate_cuda_layernorm_backward_f32": (INT, [P, P, P, P, P, P, P, P, I64, I64, P]),
    "crate_cuda_softmax_forward_f32": (INT, [P, P, I64, I64, INT, P]),
    "crate_cuda_softmax_backward_f32": (INT, [P, P, P, I64, I64, INT, P]),
    "crate_cuda_cross_entropy_forward_f32": (INT, [P, P, P, P, P, I64, I64, F64, I64, P]),
    "crate_cuda_cross_entropy_backward_f32": (INT, [P, P, P, P, P, I64, I64, F64, I64, P]),
    "crate_cuda_layernorm_forward_bf16": (INT, [P, P, P, P, P, P, I64, I64, F64, P]),
    "crate_cuda_layernorm_backward_bf16": (INT, [P, P, P, P, P, P, P, P, I64, I64, P]),
    "crate_cuda_softmax_forward_bf16": (INT, [P, P, I64, I64, INT, P]),
    "crate_cuda_softmax_backward_bf16": (INT, [P, P, P, I64, I64, INT, P]),
    "crate_cuda_cross_entropy_forward_bf16": (INT, [P, P, P, P, P, I64, I64, F64, I64, P]),
    "crate_cuda_cross_entropy_backward_bf16": (INT, [P, P, P, P, P, I64, I64, F64, I64, P]),
    "crate_cuda_gemm_bf16_bf16": (INT, [INT, INT, I64, I64, I64, F32, P, I64, P, I64, F32, P, I64, I64, I64, I64, I64, P]),
    "crate_cuda_gemm_f16": (INT, [INT, INT, I64, I64, I64, F32, P, I64, P, I64, F32, P, I64, I64, I64, I64, I64, P]),
    "crate_cuda_ista_forward_bf16": (INT, [P, P, P, I64, I64, F32, F32, P]),
    "crate_cuda_ista_backward_bf16": (INT, [P, P, P, P, P, P, I64, I64, F32, P]),
    "crate_cuda_ista_overcomplete_forward_bf16": (INT, [P, P, P, P, P, P, P, I64, I64, I64, F32, F32, P]),
    "crate_cuda_ista_overcomplete_backward_bf16": (INT, [P, P, P, P, P, P, P, P, P, P, I64, I64, I64, F32, P]),
    "crate_cuda_ista_tied_forward_bf16": (INT, [P, P, P, P, P, P, I64, I64, I64, F32, F32, P]),
    "crate_cuda_ista_tied_backward_bf16": (INT, [P, P, P, P, P, P, P, P, I64, I64, I64, F32, P]),
}
STATUS = {0: "CRATE_OK", 1: "CRATE_ERR_INVALID_ARGUMENT", 2: "CRATE_ERR_NUMERICAL", 3: "CRATE_ERR_OUT_OF_MEMORY",
          4: "CRATE_ERR_CUDA", 5: "CRATE_ERR_INTERNAL"}


def header_arity_mismatches(header):
    """Compares the argument counts in SIGS with the prototypes in crate_cuda.h (a guard against
    a header change that this file missed). Returns a list of messages."""
    try:
        text = open(header).read()
    except OSError:
        return []
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = []
    for m in re.finditer(r"CRATE_API\s+[\w\s\*]+?\b(crate_cuda_\w+)\s*\(([^;]*?)\)\s*;", text):
        name, args = m.group(1), m.group(2).strip()
        args = re.sub(r"\(\*(\w*)\)\s*\([^)]*\)", r"fnptr_\1", args)  # a function-pointer parameter is one
        n = 0 if args in ("", "void") else args.count(",") + 1
        if name not in SIGS:
            out.append(f"{name} is in crate_cuda.h but not in SIGS")
        elif len(SIGS[name][1]) != n:
            out.append(f"{name}: {n} parameters in crate_cuda.h, {len(SIGS[name][1])} in SIGS")
    return out


class CrateError(RuntimeError):
    pass


class Lib:
    def __init__(self, path):
        self.path = path
        self.dll = ctypes.CDLL(path, mode=getattr(os, "RTLD_LOCAL", 0) | getattr(os, "RTLD_NOW", 2))
        self.missing = []
        self.fns = {}
        for name, (res, args) in SIGS.items():
            try:
                f = getattr(self.dll, name)
            except AttributeError:
                self.missing.append(name)
                continue
            f.restype, f.argtypes = res, args
            self.fns[name] = f

    def poisoned(self):
        f = self.fns.get("crate_cuda_status")
        return f is not None and f() != 0

    def has(self, *names):
        return all(n in self.fns for n in names)

    def last_error(self):
        m = self.fns["crate_cuda_last_error"]() if "crate_cuda_last_error" in self.fns else None
        return m.decode(errors="replace") if m else ""

    def __call__(self, name, *args):
        if name not in self.fns:
            raise CrateError(f"{name}: missing from {self.path}")
        st = self.fns[name](*args)
        if st != 0:
            raise CrateError(f"{name}: {STATUS.get(st, st)}: {self.last_error()}")


def ptr(t):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


# ----------------------------------------------------------------------------------- device

class Device:
    """torch CUDA (events, current stream), or the host self-test (perf_counter, no stream)."""

    def __init__(self, torch, host):
        self.torch, self.host = torch, host
        self.dev = torch.device("cpu" if host else "cuda")

    def stream(self):
        return None if self.host else ctypes.c_void_p(self.torch.cuda.current_stream().cuda_stream)

    def sync(self):
        if not self.host:
            self.torch.cuda.synchronize()

    def time(self, fn, warmup, reps, flush):
        for _ in range(warmup):
            fn()
        self.sync()
        t = []
        for _ in range(reps):
            if flush is not None:
                flush.fill_(1.0)  # evict the L2 between repeats (not timed)
            if self.host:
                t0 = time.perf_counter()
                fn()
                t.append((time.perf_counter() - t0) * 1e3)
            else:
                s = self.torch.cuda.Event(enable_timing=True)
                e = self.torch.cuda.Event(enable_timing=True)
                s.record()
                fn()
                e.record()
                e.synchronize()
                t.append(s.elapsed_time(e))
        return {"median_ms": statistics.median(t), "min_ms": min(t), "reps": reps}


# ------------------------------------------------------------------------------- peak table

# Dense (non-sparse) peaks: FP32 (CUDA cores), TF32 and BF16 tensor cores in TFLOP/s, HBM in TB/s.
PEAKS = [  # (name substring, label, fp32, tf32, bf16, TB/s); first match wins
    ("H200 NVL", "H200 NVL", 60.0, 417.5, 835.5, 4.8),
    ("H200", "H200 SXM", 66.9, 494.7, 989.4, 4.8),
    ("H100 NVL", "H100 NVL", 60.0, 417.5, 835.5, 3.9),
    ("H100 PCIe", "H100 PCIe", 51.2, 378.0, 756.0, 2.0),
    ("H100", "H100 SXM", 66.9, 494.7, 989.4, 3.35),
    ("A100-SXM4-80GB", "A100 SXM 80GB", 19.5, 156.0, 312.0, 2.039),
    ("A100-SXM4-40GB", "A100 SXM 40GB", 19.5, 156.0, 312.0, 1.555),
    ("A100 80GB PCIe", "A100 PCIe 80GB", 19.5, 156.0, 312.0, 1.935),
    ("A100-PCIE-40GB", "A100 PCIe 40GB", 19.5, 156.0, 312.0, 1.555),
]


def cuda_driver_attrs():
    """Driver version, SM count, max SM clock (kHz), memory clock (kHz), bus width (bits) of
    device 0 through libcuda (ctypes), or {} when unavailable."""
    try:
        cu = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return {}
    out = {}
    v = ctypes.c_int()
    if cu.cuInit(0) != 0:
        return {}
    if cu.cuDriverGetVersion(ctypes.byref(v)) == 0:
        out["driver_version"] = v.value
    dev = ctypes.c_int()
    if cu.cuDeviceGet(ctypes.byref(dev), 0) != 0:
        return out
    for key, attr in (("sm_count", 16), ("clock_khz", 13), ("mem_clock_khz", 36), ("bus_width_bits", 37)):
        if cu.cuDeviceGetAttribute(ctypes.byref(v), attr, dev) == 0:
            out[key] = v.value
    return out


def device_peaks(name, cc, attrs):
    for key, label, fp32, tf32, bf16, bw in PEAKS:
        if key.lower() in name.lower():
            return {"source": f"table ({label}, dense)", "fp32": fp32, "tf32": tf32, "bf16": bf16, "bw_tbs": bw}
    lanes = 64 if cc in ((7, 0), (7, 5), (8, 0)) else 128  # FP32 lanes per SM
    p = {"source": "computed from the driver's attributes", "fp32": None, "tf32": None, "bf16": None, "bw_tbs": None}
    if attrs.get("sm_count") and attrs.get("clock_khz"):
        p["fp32"] = attrs["sm_count"] * lanes * 2 * attrs["clock_khz"] * 1e3 / 1e12
    if attrs.get("mem_clock_khz") and attrs.get("bus_width_bits"):
        p["bw_tbs"] = 2 * attrs["mem_clock_khz"] * 1e3 * attrs["bus_width_bits"] / 8 / 1e12
    return p


def git_commit():
    try:
        c = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        if c.returncode == 0 and c.stdout.strip():
            d = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10)
            return c.stdout.strip() + ("+dirty" if d.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("CRATE_COMMIT", "unknown")


# --------------------------------------------------------------------------- torch references

def refs(torch):
    F = torch.nn.functional

    def mssa(P, H, causal, scale, key_mask=None):  # matmul-softmax, Q = K = V = P_h
        B, N, C = P.shape
        w = P.view(B, N, H, C // H).transpose(1, 2)
        s = torch.matmul(w, w.transpose(-1, -2)) * scale
        if causal:
            s = s.masked_fill(torch.ones(N, N, dtype=torch.bool, device=P.device).triu(1), float("-inf"))
        if key_mask is not None:
            s = s.masked_fill(~key_mask.bool()[:, None, None, :], float("-inf"))
        L = torch.logsumexp(s, -1)
        O = torch.matmul(torch.softmax(s, -1), w).transpose(1, 2).reshape(B, N, C)
        return O, L

    def ista(Y, W, eta, lam):  # model/crate.py FeedForward
        x1 = F.linear(Y, W, bias=None)
        grad_1 = F.linear(x1, W.t(), bias=None)
        grad_2 = F.linear(Y, W.t(), bias=None)
        return F.relu(Y + eta * (grad_2 - grad_1) - eta * lam)

    def logdet(Z, alpha):  # 1/2 logdet(I + alpha Z Z^T) by Cholesky on the smaller side
        b, m, n = Z.shape
        G = Z @ Z.transpose(-1, -2) if m <= n else Z.transpose(-1, -2) @ Z
        k = min(m, n)
        A = torch.eye(k, dtype=Z.dtype, device=Z.device) + alpha[:, None, None] * G
        Lc = torch.linalg.cholesky(A)
        return torch.log(torch.diagonal(Lc, dim1=-2, dim2=-1)).sum(-1), Lc

    def tssa(X, temp, H):  # tost.py AttentionTSSA after qkv
        B, N, C = X.shape
        w = X.view(B, N, H, C // H).transpose(1, 2)  # (B, H, N, p)
        w_normed = F.normalize(w, dim=-2)
        w_sq = w_normed ** 2
        Pi = F.softmax(torch.sum(w_sq, dim=-1) * temp.view(H, 1), dim=1)  # (B, H, N)
        dots = torch.matmul((Pi / (Pi.sum(dim=-1, keepdim=True) + 1e-8)).unsqueeze(-2), w ** 2)
        attn = 1.0 / (1 + dots)
        out = -torch.mul(w.mul(Pi.unsqueeze(-1)), attn)
        return out.transpose(1, 2).reshape(B, N, C), Pi

    def ista_oc(Y, D, D1, eta, lam):  # CRATE-alpha overcomplete two-step ISTA; saved A1, A2, R
        A1 = F.relu(eta * (Y @ D) - eta * lam)
        R = A1 @ D.t() - Y
        A2 = F.relu(A1 - eta * (R @ D) - eta * lam)
        return A2 @ D1.t(), A1, A2, R

    def ista_tied(Y, W, eta, lam):  # CRATE-GPT tied ISTA (decoder = W); saved A0, A1, R
        A0 = F.relu(eta * (Y @ W.t()) - eta * lam)
        R = Y - A0 @ W
        A1 = F.relu(A0 + eta * (R @ W.t()) - eta * lam)
        return A1 @ W, A0, A1, R

    def tssa_causal(X, temp, bias, H):  # tost_lang/model_TSSA.py CausalSelfAttention_TSSA after c_attn
        B, T, C = X.shape
        w = X.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, p)
        w_sq = w ** 2
        w_normed = w_sq / torch.cumsum(w_sq, dim=-2).clamp_min(1e-12) + bias[:, :T].reshape(1, H, T, 1)
        Pi = F.softmax(w_normed.sum(-1) * temp.view(1, H, 1), dim=1)  # (B, H, T)
        dots = torch.cumsum(w_sq * Pi.unsqueeze(-1), dim=-2) / (torch.cumsum(Pi, dim=-1).unsqueeze(-1) + 1e-8)
        out = -(w * Pi.unsqueeze(-1)) / (1 + dots)
        return out.transpose(1, 2).reshape(B, T, C), Pi

    return {"mssa": mssa, "ista": ista, "logdet": logdet, "tssa": tssa, "ista_oc": ista_oc, "ista_tied": ista_tied,
            "tssa_causal": tssa_causal}


# ------------------------------------------------------------------------------ correctness

class Checks:
    def __init__(self, torch):
        self.torch = torch
        self.rows = []

    def out(self, kernel, case, what, ours, t32, ref, floor):
        """FlashAttention's criterion on one output; infinities must match."""
        torch = self.torch
        ours, t32, ref = ours.detach().double().flatten(), t32.detach().double().flatten(), ref.detach().double().flatten()
        fin = torch.isfinite(ref)
        bad_inf = int((~fin & (ours != ref)).sum())
        nonfinite = int((fin & ~torch.isfinite(ours)).sum())
        r, o, t = ref[fin], ours[fin], t32[fin]
        scale = float(r.abs().max()) if r.numel() else 0.0
        e_ours = float((torch.nan_to_num(o, nan=math.inf) - r).abs().max()) if r.numel() else 0.0
        e_t32 = float((torch.nan_to_num(t, nan=0.0) - r).abs().max()) if r.numel() else 0.0
        bound = 2 * e_t32 + floor * max(scale, 1e-30)
        ok = e_ours <= bound and bad_inf == 0 and nonfinite == 0
        self.rows.append({"kind": "check", "kernel": kernel, "case": case, "output": what, "err_ours": e_ours,
                          "err_torch_f32": e_t32, "bound": bound, "scale": scale, "pass": ok,
                          "note": (f"{nonfinite} non-finite; " if nonfinite else "") + (f"{bad_inf} inf mismatches" if bad_inf else "")})
        return ok

    def fail(self, kernel, case, msg):
        self.rows.append({"kind": "check", "kernel": kernel, "case": case, "output": "-", "err_ours": None,
                          "err_torch_f32": None, "bound": None, "scale": None, "pass": False, "note": msg})

    def gemm(self, case, C, A64, B64, K, mode):
        """Element-wise: |C - A B| <= gamma (|A||B|), gamma = 2^-24 max(16, 2 sqrt K) (+ 2^-9 for TF32)."""
        torch = self.torch
        ref = A64 @ B64
        scl = A64.abs() @ B64.abs()
        gamma = 2.0 ** -24 * max(16.0, 2 * math.sqrt(K)) + (2.0 ** -9 if mode == "tf32" else 0.0)
        err = (C.double() - ref).abs()
        worst = float((err / (gamma * scl + 1e-30)).max())
        ok = bool(torch.isfinite(C).all()) and worst <= 1.0
        self.rows.append({"kind": "check", "kernel": "gemm", "case": case, "output": "C",
                          "err_ours": float((err / scl.clamp_min(1e-30)).max()), "err_torch_f32": None,
                          "bound": gamma, "scale": None, "pass": ok, "note": f"worst err/tol {worst:.3f}"})
        return ok


def bf16_bits(torch, x):
    return x.to(torch.bfloat16).view(torch.int16)


def f16_bits(torch, x):
    return x.to(torch.float16).view(torch.int16)


def run_checks(torch, lib, dv, quick):
    F = torch.nn.functional
    R = refs(torch)
    ck = Checks(torch)
    dev = dv.dev
    g = torch.Generator(device="cpu").manual_seed(0)

    def rn(*shape, std=1.0, dtype=torch.float32):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * std).to(dtype).to(dev)

    def case(kernel, name, body):
        if lib.poisoned():
            return
        try:
            body(name)
        except CrateError as e:
            ck.fail(kernel, name, str(e))
        except Exception as e:  # a torch-side failure is reported, not fatal
            ck.fail(kernel, name, f"{type(e).__name__}: {e}")
        if lib.poisoned():
            ck.fail(kernel, name, f"CUDA context poisoned (sticky error), stopping: {lib.last_error()}")

    S = dv.stream
    FLOOR_OUT, FLOOR_GRAD, FLOOR_F64I, FLOOR_F64IG = 2e-6, 5e-6, 2e-5, 5e-5

    # MSSA
    for B, N, H, p, causal, masked in ([(2, 65, 2, 64, 0, False), (2, 129, 2, 32, 1, True)] if quick else
                                       [(2, 197, 6, 64, 0, False), (2, 256, 4, 128, 1, False), (2, 129, 3, 16, 0, True),
                                        (1, 1024, 2, 64, 1, True), (3, 33, 2, 32, 1, False)]):
        def body(name, B=B, N=N, H=H, p=p, causal=causal, masked=masked):
            P = rn(B, N, H * p)
            mask = None
            if masked:
                mask = (torch.rand(B, N, generator=g) > 0.25).to(torch.uint8)
                mask[:, 0] = 1  # every row keeps key 0 (fully masked rows: crate_cuda_test covers them)
                mask = mask.to(dev)
            scale = 1.0 / math.sqrt(p)
            dO = rn(B, N, H * p)
            outs = {}
            for dt in (torch.float64, torch.float32):
                Pd = P.to(dt).requires_grad_()
                O, L = R["mssa"](Pd, H, causal, scale, mask)
                (dP,) = torch.autograd.grad(O, Pd, dO.to(dt))
                outs[dt] = (O, L, dP)
            O64, L64, dP64 = outs[torch.float64]
            O32, L32, dP32 = outs[torch.float32]
            Oc, Lc, dPc = torch.empty_like(P), torch.empty(B, H, N, device=dev), torch.empty_like(P)
            lib("crate_cuda_mssa_forward_f32", ptr(P), ptr(Oc), ptr(Lc), B, N, H, p, scale, causal, ptr(mask), S())
            Oi, Li = O64.detach().float(), L64.detach().float()  # backward on the f64 forward's O, L
            lib("crate_cuda_mssa_backward_f32", ptr(P), ptr(Oi), ptr(Li), ptr(dO), ptr(dPc), B, N, H, p, scale, causal,
                ptr(mask), S())
            dv.sync()
            ck.out("mssa", name, "O", Oc, O32, O64, FLOOR_OUT)
            ck.out("mssa", name, "L", Lc, L32, L64, FLOOR_OUT)
            ck.out("mssa", name, "dP", dPc, dP32, dP64, FLOOR_GRAD)
        case("mssa", f"B={B} N={N} H={H} p={p} causal={causal} mask={'some' if masked else 'none'}", body)

    # MSSA bf16: on the bf16-rounded inputs; O and dP against torch's own bf16 matmul-softmax as the
    # peer (FlashAttention's criterion: our error <= 2x the peer's + 2^-8 max|ref|), L (f32) against
    # the f32 peer
    for B, N, H, p, causal, masked in ([(2, 65, 2, 64, 0, False), (2, 129, 2, 40, 1, True)] if quick else
                                       [(2, 197, 6, 64, 0, False), (2, 256, 4, 128, 1, False), (2, 129, 3, 40, 0, True),
                                        (1, 1024, 2, 64, 1, True)]):
        def body(name, B=B, N=N, H=H, p=p, causal=causal, masked=masked):
            Pb, dOb = rn(B, N, H * p, dtype=torch.bfloat16), rn(B, N, H * p, dtype=torch.bfloat16)
            mask = None
            if masked:
                mask = (torch.rand(B, N, generator=g) > 0.25).to(torch.uint8)
                mask[:, 0] = 1
                mask = mask.to(dev)
            scale = 1.0 / math.sqrt(p)
            outs = {}
            for dt in (torch.float64, torch.float32, torch.bfloat16):
                Pd = Pb.to(dt).requires_grad_()
                O, L = R["mssa"](Pd, H, causal, scale, mask)
                (dP,) = torch.autograd.grad(O, Pd, dOb.to(dt))
                outs[dt] = (O, L, dP)
            O64, L64, dP64 = outs[torch.float64]
            L32 = outs[torch.float32][1]
            Ob, _, dPb = outs[torch.bfloat16]
            Oc, Lc = torch.empty_like(Pb), torch.empty(B, H, N, device=dev)
            dPc = torch.empty_like(Pb)
            lib("crate_cuda_mssa_forward_bf16", ptr(Pb), ptr(Oc), ptr(Lc), B, N, H, p, scale, causal, ptr(mask), S())
            Oi, Li = O64.detach().to(torch.bfloat16), L64.detach().float()  # backward on the f64 forward's O, L
            lib("crate_cuda_mssa_backward_bf16", ptr(Pb), ptr(Oi), ptr(Li), ptr(dOb), ptr(dPc), B, N, H, p, scale,
                causal, ptr(mask), S())
            dv.sync()
            ck.out("mssa_bf16", name, "O", Oc, Ob, O64, 2 ** -8)
            ck.out("mssa_bf16", name, "L", Lc, L32, L64, FLOOR_OUT)
            ck.out("mssa_bf16", name, "dP", dPc, dPb, dP64, 2 ** -8)
        case("mssa_bf16", f"B={B} N={N} H={H} p={p} causal={causal} mask={'some' if masked else 'none'}", body)

    # ISTA
    for T, d in ([(33, 64), (129, 65)] if quick else [(197, 384), (1576, 384), (4096, 768), (65, 129)]):
        def body(name, T=T, d=d):
            Y, W, G = rn(T, d), rn(d, d, std=1 / math.sqrt(d)), rn(T, d)
            eta, lam = 0.1, 0.1
            outs = {}
            for dt in (torch.float64, torch.float32):
                Yd, Wd = Y.to(dt).requires_grad_(), W.to(dt).requires_grad_()
                Z = R["ista"](Yd, Wd, eta, lam)
                dY, dW = torch.autograd.grad(Z, (Yd, Wd), G.to(dt))
                outs[dt] = (Z, dY, dW)
            Z64, dY64, dW64 = outs[torch.float64]
            Z32, dY32, dW32 = outs[torch.float32]
            Zc, dYc, dWc = torch.empty_like(Y), torch.empty_like(Y), torch.empty_like(W)
            lib("crate_cuda_ista_forward_f32", ptr(Y), ptr(W), ptr(Zc), T, d, eta, lam, S())
            Zi = Z64.detach().float()  # the f64 forward's ReLU mask
            lib("crate_cuda_ista_backward_f32", ptr(Y), ptr(W), ptr(Zi), ptr(G), ptr(dYc), ptr(dWc), T, d, eta, S())
            dv.sync()
            ck.out("ista", name, "Z", Zc, Z32, Z64, FLOOR_OUT)
            ck.out("ista", name, "dY", dYc, dY32, dY64, FLOOR_GRAD)
            ck.out("ista", name, "dW", dWc, dW32, dW64, FLOOR_GRAD)
        case("ista", f"T={T} d={d}", body)

    # CRATE-alpha overcomplete ISTA and causal CRATE's tied ISTA
    for T, d, m in ([(33, 32, 128)] if quick else [(1576, 384, 1536), (4096, 768, 3072), (65, 33, 133)]):
        def body(name, T=T, d=d, m=m):
            Y, G = rn(T, d), rn(T, d)
            D, D1 = rn(d, m, std=1 / math.sqrt(d)), rn(d, m, std=1 / math.sqrt(m))
            eta, lam = 0.1, 0.1
            outs = {}
            for dt in (torch.float64, torch.float32):
                Yd, Dd, D1d = (t.to(dt).requires_grad_() for t in (Y, D, D1))
                out, A1, A2, Rr = R["ista_oc"](Yd, Dd, D1d, eta, lam)
                grads = torch.autograd.grad(out, (Yd, Dd, D1d), G.to(dt))
                outs[dt] = (out, A1, A2, Rr, *grads)
            o64, A164, A264, R64, dY64, dD64, dD164 = outs[torch.float64]
            o32, _, _, _, dY32, dD32, dD132 = outs[torch.float32]
            oc = torch.empty_like(Y)
            lib("crate_cuda_ista_overcomplete_forward_f32", ptr(Y), ptr(D), ptr(D1), ptr(oc), None, None, None, T, d, m,
                eta, lam, S())
            A1i, A2i, Ri = (t.detach().float() for t in (A164, A264, R64))  # the f64 forward's ReLU masks
            dYc, dDc, dD1c = torch.empty_like(Y), torch.empty_like(D), torch.empty_like(D1)
            lib("crate_cuda_ista_overcomplete_backward_f32", ptr(Y), ptr(D), ptr(D1), ptr(A1i), ptr(A2i), ptr(Ri),
                ptr(G), ptr(dYc), ptr(dDc), ptr(dD1c), T, d, m, eta, S())
            dv.sync()
            ck.out("ista_overcomplete", name, "out", oc, o32, o64, FLOOR_OUT)
            ck.out("ista_overcomplete", name, "dY", dYc, dY32, dY64, FLOOR_GRAD)
            ck.out("ista_overcomplete", name, "dD", dDc, dD32, dD64, FLOOR_GRAD)
            ck.out("ista_overcomplete", name, "dD1", dD1c, dD132, dD164, FLOOR_GRAD)
        case("ista_overcomplete", f"T={T} d={d} m={m}", body)

        def body_tied(name, T=T, d=d, m=m):
            Y, G, W = rn(T, d), rn(T, d), rn(m, d, std=1 / math.sqrt(m))
            eta, lam = 0.1, 0.1
            outs = {}
            for dt in (torch.float64, torch.float32):
                Yd, Wd = Y.to(dt).requires_grad_(), W.to(dt).requires_grad_()
                out, A0, A1, Rr = R["ista_tied"](Yd, Wd, eta, lam)
                dY, dW = torch.autograd.grad(out, (Yd, Wd), G.to(dt))
                outs[dt] = (out, A0, A1, Rr, dY, dW)
            o64, A064, A164, R64, dY64, dW64 = outs[torch.float64]
            o32, _, _, _, dY32, dW32 = outs[torch.float32]
            oc = torch.empty_like(Y)
            lib("crate_cuda_ista_tied_forward_f32", ptr(Y), ptr(W), ptr(oc), None, None, None, T, d, m, eta, lam, S())
            A0i, A1i, Ri = (t.detach().float() for t in (A064, A164, R64))
            dYc, dWc = torch.empty_like(Y), torch.empty_like(W)
            lib("crate_cuda_ista_tied_backward_f32", ptr(Y), ptr(W), ptr(A0i), ptr(A1i), ptr(Ri), ptr(G), ptr(dYc),
                ptr(dWc), T, d, m, eta, S())
            dv.sync()
            ck.out("ista_tied", name, "out", oc, o32, o64, FLOOR_OUT)
            ck.out("ista_tied", name, "dY", dYc, dY32, dY64, FLOOR_GRAD)
            ck.out("ista_tied", name, "dW", dWc, dW32, dW64, FLOOR_GRAD)
        case("ista_tied", f"T={T} d={d} m={m}", body_tied)

    # coding rate
    for b, m, n in ([(2, 33, 65), (2, 65, 33)] if quick else [(384, 64, 197), (8, 197, 64), (16, 128, 1024), (4, 33, 129)]):
        def body(name, b=b, m=m, n=n):
            Z = rn(b, m, n)
            alpha = (torch.rand(b, generator=g, dtype=torch.float64) * 0.9 + 0.05) * 64.0 / max(m, n)
            alpha = alpha.float().to(dev)
            dR = (torch.rand(b, generator=g, dtype=torch.float64) * 2 - 1).float().to(dev)
            k = min(m, n)
            outs = {}
            for dt in (torch.float64, torch.float32):
                Zd = Z.to(dt).requires_grad_()
                Rv, Lc = R["logdet"](Zd, alpha.to(dt))
                (dZ,) = torch.autograd.grad(Rv, Zd, dR.to(dt))
                outs[dt] = (Rv, Lc.transpose(-1, -2), dZ)  # ours stores the upper factor U = L^T
            R64, U64, dZ64 = outs[torch.float64]
            R32, U32, dZ32 = outs[torch.float32]
            Rc = torch.empty(b, device=dev)
            chol = torch.empty(b, k, k, dtype=torch.float64, device=dev)
            dZc = torch.empty_like(Z)
            lib("crate_cuda_logdet_gram_forward_f32", ptr(Z), ptr(alpha), ptr(Rc), b, m, n, ptr(chol), S())
            lib("crate_cuda_logdet_gram_backward_f32", ptr(Z), ptr(alpha), ptr(dR), ptr(dZc), b, m, n, ptr(chol), S())
            dv.sync()
            ck.out("logdet", name, "R", Rc, R32, R64, FLOOR_F64I)
            ck.out("logdet", name, "chol", chol, U32, U64, FLOOR_F64I)
            ck.out("logdet", name, "dZ", dZc, dZ32, dZ64, FLOOR_F64IG)
        case("logdet", f"b={b} m={m} n={n}", body)

    # TSSA
    for B, N, H, p in ([(2, 65, 2, 32)] if quick else [(8, 197, 6, 64), (2, 1024, 4, 64), (2, 4096, 2, 128), (2, 7, 3, 16)]):
        def body(name, B=B, N=N, H=H, p=p):
            X, G = rn(B, N, H * p), rn(B, N, H * p)
            temp = (torch.rand(H, generator=g, dtype=torch.float64) * 1.5 + 0.5).float().to(dev)
            outs = {}
            for dt in (torch.float64, torch.float32):
                Xd, td = X.to(dt).requires_grad_(), temp.to(dt).requires_grad_()
                Y, Pi = R["tssa"](Xd, td, H)
                dX, dt_ = torch.autograd.grad(Y, (Xd, td), G.to(dt))
                outs[dt] = (Y, Pi, dX, dt_)
            Y64, Pi64, dX64, dt64 = outs[torch.float64]
            Y32, Pi32, dX32, dt32 = outs[torch.float32]
            Yc, Pic = torch.empty_like(X), torch.empty(B, H, N, device=dev)
            cn, ms = torch.empty(B, H * p, device=dev), torch.empty(B, H * p, device=dev)
            dXc, dtc = torch.empty_like(X), torch.empty(H, device=dev)
            lib("crate_cuda_tssa_forward_f32", ptr(X), ptr(temp), ptr(Yc), ptr(Pic), ptr(cn), ptr(ms), B, N, H, p, S())
            lib("crate_cuda_tssa_backward_f32", ptr(X), ptr(temp), ptr(G), ptr(Pic), ptr(cn), ptr(ms), ptr(dXc),
                ptr(dtc), B, N, H, p, S())
            dv.sync()
            ck.out("tssa", name, "Y", Yc, Y32, Y64, FLOOR_F64I)
            ck.out("tssa", name, "Pi", Pic, Pi32, Pi64, FLOOR_F64I)
            ck.out("tssa", name, "dW", dXc, dX32, dX64, FLOOR_F64IG)
            ck.out("tssa", name, "dtemp", dtc, dt32, dt64, FLOOR_F64IG)
        case("tssa", f"B={B} N={N} H={H} p={p}", body)

    # causal TSSA (ToST language)
    for B, T, H, p in ([(2, 65, 2, 16)] if quick else [(2, 1024, 12, 64), (1, 200, 3, 33), (2, 17, 4, 16)]):
        def body(name, B=B, T=T, H=H, p=p):
            X, G = rn(B, T, H * p), rn(B, T, H * p)
            Tmax = T + 7
            temp = (torch.rand(H, generator=g, dtype=torch.float64) * 1.5 + 0.5).float().to(dev)
            bias = rn(H, Tmax, std=0.1)
            outs = {}
            for dt in (torch.float64, torch.float32):
                Xd, td, bd = X.to(dt).requires_grad_(), temp.to(dt).requires_grad_(), bias.to(dt).requires_grad_()
                Y, Pi = R["tssa_causal"](Xd, td, bd, H)
                grads = torch.autograd.grad(Y, (Xd, td, bd), G.to(dt))
                outs[dt] = (Y, Pi, *grads)
            Y64, Pi64, dX64, dt64, db64 = outs[torch.float64]
            Y32, Pi32, dX32, dt32, db32 = outs[torch.float32]
            Yc, Pic = torch.empty_like(X), torch.empty(B, H, T, device=dev)
            dXc, dtc, dbc = torch.empty_like(X), torch.empty(H, device=dev), torch.empty(H, Tmax, device=dev)
            lib("crate_cuda_tssa_causal_forward_f32", ptr(X), ptr(temp), ptr(bias), ptr(Yc), ptr(Pic), B, T, H, p, Tmax,
                S())
            lib("crate_cuda_tssa_causal_backward_f32", ptr(X), ptr(temp), ptr(bias), ptr(G), ptr(dXc), ptr(dtc), ptr(dbc),
                B, T, H, p, Tmax, S())
            dv.sync()
            ck.out("tssa_causal", name, "Y", Yc, Y32, Y64, FLOOR_F64I)
            ck.out("tssa_causal", name, "Pi", Pic, Pi32, Pi64, FLOOR_F64I)
            ck.out("tssa_causal", name, "dW", dXc, dX32, dX64, FLOOR_F64IG)
            ck.out("tssa_causal", name, "dtemp", dtc, dt32, dt64, FLOOR_F64IG)
            ck.out("tssa_causal", name, "ddenom_bias", dbc, db32, db64, FLOOR_F64IG)
        case("tssa_causal", f"B={B} T={T} H={H} p={p}", body)

    # LayerNorm
    for rows, cols in ([(33, 65)] if quick else [(8192, 384), (1024, 4096), (129, 33)]):
        def body(name, rows=rows, cols=cols):
            x, G = rn(rows, cols, std=2.0) + 1.0, rn(rows, cols)
            w, b = rn(cols, std=0.2) + 1.0, rn(cols, std=0.1)
            outs = {}
            for dt in (torch.float64, torch.float32):
                xd, wd, bd = (t.to(dt).requires_grad_() for t in (x, w, b))
                y, mean, rstd = torch.native_layer_norm(xd, [cols], wd, bd, 1e-5)
                dx, dw, db = torch.autograd.grad(y, (xd, wd, bd), G.to(dt))
                outs[dt] = (y, mean.flatten(), rstd.flatten(), dx, dw, db)
            o64, o32 = outs[torch.float64], outs[torch.float32]
            y, mean, rstd = torch.empty_like(x), torch.empty(rows, device=dev), torch.empty(rows, device=dev)
            dx, dw, db = torch.empty_like(x), torch.zeros(cols, device=dev), torch.zeros(cols, device=dev)
            lib("crate_cuda_layernorm_forward_f32", ptr(x), ptr(w), ptr(b), ptr(y), ptr(mean), ptr(rstd), rows, cols,
                1e-5, S())
            mi, si = o64[1].detach().float(), o64[2].detach().float()
            lib("crate_cuda_layernorm_backward_f32", ptr(x), ptr(w), ptr(mi), ptr(si), ptr(G), ptr(dx), ptr(dw),
                ptr(db), rows, cols, S())
            dv.sync()
            for i, (nm, t, fl) in enumerate((("y", y, FLOOR_OUT), ("mean", mean, FLOOR_OUT), ("rstd", rstd, FLOOR_OUT),
                                             ("dx", dx, FLOOR_GRAD), ("dw", dw, FLOOR_GRAD), ("db", db, FLOOR_GRAD))):
                ck.out("layernorm", name, nm, t, o32[i], o64[i], fl)
        case("layernorm", f"rows={rows} cols={cols}", body)

    # softmax
    for rows, cols, log in ([(33, 65, 0), (7, 129, 1)] if quick else [(4096, 1024, 0), (512, 50257, 1), (129, 33, 0)]):
        def body(name, rows=rows, cols=cols, log=log):
            x, G = rn(rows, cols, std=3.0), rn(rows, cols)
            outs = {}
            for dt in (torch.float64, torch.float32):
                xd = x.to(dt).requires_grad_()
                y = (F.log_softmax if log else F.softmax)(xd, -1)
                (dx,) = torch.autograd.grad(y, xd, G.to(dt))
                outs[dt] = (y, dx)
            y, dx = torch.empty_like(x), torch.empty_like(x)
            lib("crate_cuda_softmax_forward_f32", ptr(x), ptr(y), rows, cols, log, S())
            yi = outs[torch.float64][0].detach().float()
            lib("crate_cuda_softmax_backward_f32", ptr(yi), ptr(G), ptr(dx), rows, cols, log, S())
            dv.sync()
            ck.out("softmax", name, "y", y, outs[torch.float32][0], outs[torch.float64][0], FLOOR_OUT)
            ck.out("softmax", name, "dx", dx, outs[torch.float32][1], outs[torch.float64][1], FLOOR_GRAD)
        case("softmax", f"rows={rows} cols={cols} log={log}", body)

    # cross-entropy
    for rows, classes, sm in ([(33, 10, 0.1)] if quick else [(4096, 50257, 0.0), (8192, 1000, 0.1), (7, 3, 0.1)]):
        def body(name, rows=rows, classes=classes, sm=sm):
            x = rn(rows, classes, std=2.0)
            t = torch.randint(0, classes, (rows,), generator=g)
            t[3::5] = -100
            t32, t64 = t.to(torch.int32).to(dev), t.to(dev)
            gr = (torch.rand(rows, generator=g, dtype=torch.float64) * 0.9 + 0.1).float().to(dev)
            outs = {}
            for dt in (torch.float64, torch.float32):
                xd = x.to(dt).requires_grad_()
                loss = F.cross_entropy(xd, t64, reduction="none", label_smoothing=sm, ignore_index=-100)
                (dx,) = torch.autograd.grad(loss, xd, gr.to(dt))
                outs[dt] = (loss, torch.logsumexp(xd, -1), dx)
            loss, lse, dx = torch.empty(rows, device=dev), torch.empty(rows, device=dev), torch.empty_like(x)
            counted = torch.empty(1, dtype=torch.int64, device=dev)
            lib("crate_cuda_cross_entropy_forward_f32", ptr(x), ptr(t32), ptr(loss), ptr(lse), ptr(counted), rows,
                classes, sm, -100, S())
            lsei = outs[torch.float64][1].detach().float()
            lib("crate_cuda_cross_entropy_backward_f32", ptr(x), ptr(t32), ptr(lsei), ptr(gr), ptr(dx), rows, classes,
                sm, -100, S())
            dv.sync()
            ck.out("cross_entropy", name, "loss_row", loss, outs[torch.float32][0], outs[torch.float64][0], FLOOR_OUT)
            ck.out("cross_entropy", name, "lse", lse, outs[torch.float32][1], outs[torch.float64][1], FLOOR_OUT)
            ck.out("cross_entropy", name, "dlogits", dx, outs[torch.float32][2], outs[torch.float64][2], FLOOR_GRAD)
            want = int((t != -100).sum())
            if int(counted.item()) != want:
                ck.fail("cross_entropy", name, f"counted {int(counted.item())}, expected {want}")
        case("cross_entropy", f"rows={rows} classes={classes} smoothing={sm}", body)

    # GEMM (C = A B and C = A^T B^T, batched), own and cuBLAS, f32 / TF32 / bf16 / f16
    for own in (1, 0):
        for M, N, K in ([(65, 33, 129)] if quick else [(1024, 1024, 1024), (197, 384, 1152), (4096, 512, 4096)]):
            for mode in ("f32", "tf32", "bf16", "f16"):
                def body(name, own=own, M=M, N=N, K=K, mode=mode):
                    lib("crate_cuda_gemm_force_own", own)
                    A, Bm = rn(2, M, K), rn(2, K, N)
                    C = torch.empty(2, M, N, device=dev)
                    if mode in ("bf16", "f16"):
                        bits, dt = (bf16_bits, torch.bfloat16) if mode == "bf16" else (f16_bits, torch.float16)
                        A16, B16 = bits(torch, A), bits(torch, Bm)
                        lib(f"crate_cuda_gemm_{mode}", 0, 0, M, N, K, 1.0, ptr(A16), K, ptr(B16), N, 0.0, ptr(C), N, 2,
                            M * K, K * N, M * N, S())
                        A64, B64 = A16.view(dt).double(), B16.view(dt).double()
                    else:
                        lib("crate_cuda_gemm_f32", 0, 0, M, N, K, 1.0, ptr(A), K, ptr(Bm), N, 0.0, ptr(C), N, 2, M * K,
                            K * N, M * N, 1 if mode == "tf32" else 0, S())
                        A64, B64 = A.double(), Bm.double()
                    dv.sync()
                    ck.gemm(name, C, A64, B64, K, mode)
                    # transposed operands: C = A^T B^T from the stored (K, M) and (N, K) matrices
                    At, Bt = A64[0].t().contiguous().float(), B64[0].t().contiguous().float()
                    C2 = torch.empty(M, N, device=dev)
                    if mode in ("f32", "tf32"):
                        lib("crate_cuda_gemm_f32", 1, 1, M, N, K, 1.0, ptr(At), M, ptr(Bt), K, 0.0, ptr(C2), N, 1, 0, 0,
                            0, 1 if mode == "tf32" else 0, S())
                        dv.sync()
                        ck.gemm(name + " ta=1 tb=1", C2, A64[0], B64[0], K, mode)
                backend = "own" if own else "cublas"
                case("gemm", f"{backend} {mode} 2x M={M} N={N} K={K}", body)
    if lib.has("crate_cuda_gemm_force_own"):
        lib.fns["crate_cuda_gemm_force_own"](0)
    return ck.rows


# ---------------------------------------------------------------------------------- timings

def run_bench(torch, lib, dv, quick, reps, warmup, peaks):
    F = torch.nn.functional
    R = refs(torch)
    dev, S = dv.dev, dv.stream
    flush = None if dv.host else torch.empty(256 * 2 ** 20 // 4, dtype=torch.float32, device=dev)
    rows = []

    def rec(op, shape, impl, r, flops, nbytes, peak_kind):
        ms = r["median_ms"]
        row = {"kind": "time", "op": op, "shape": shape, "impl": impl, **r, "flops": flops, "bytes": nbytes,
               "tflops": flops / ms / 1e9 if flops else None, "gbs": nbytes / ms / 1e6 if nbytes else None,
               "peak_kind": peak_kind}
        pk = peaks.get(peak_kind) if peak_kind != "bw" else peaks.get("bw_tbs")
        if pk:
            row["pct_peak"] = 100 * (row["gbs"] / 1e3 / pk if peak_kind == "bw" else row["tflops"] / pk)
        rows.append(row)
        extra = f" {row['tflops']:.1f} TFLOP/s" if flops else ""
        extra += f" {row['gbs']:.0f} GB/s" if nbytes and peak_kind == "bw" else ""
        print(f"  {op:<10} {shape:<28} {impl:<34} {ms:9.3f} ms{extra}", flush=True)

    def timed(op, shape, impl, fn, flops, nbytes, peak_kind):
        if lib.poisoned():
            rows.append({"kind": "time", "op": op, "shape": shape, "impl": impl,
                         "error": f"not run: CUDA context poisoned ({lib.last_error()})"})
            return
        try:
            rec(op, shape, impl, dv.time(fn, warmup, reps, flush), flops, nbytes, peak_kind)
        except CrateError as e:
            rows.append({"kind": "time", "op": op, "shape": shape, "impl": impl, "error": str(e)})
            print(f"  {op:<10} {shape:<28} {impl:<34} error: {e}", flush=True)
        except Exception as e:  # e.g. a torch peer out of memory: reported, the rest goes on
            rows.append({"kind": "time", "op": op, "shape": shape, "impl": impl, "error": f"{type(e).__name__}: {e}"})
            print(f"  {op:<10} {shape:<28} {impl:<34} error: {type(e).__name__}: {str(e)[:120]}", flush=True)
            if not dv.host:
                torch.cuda.empty_cache()

    def leaf(*shape, std=1.0, dtype=torch.float32):
        return (torch.randn(*shape, device=dev, dtype=dtype) * std).requires_grad_()

    # MSSA
    for B, N, H, p, causal in ([(2, 128, 2, 64, 0)] if quick else
                               [(64, 197, 6, 64, 0), (8, 1024, 8, 64, 0), (8, 1024, 8, 64, 1), (2, 4096, 8, 64, 0),
                                (1, 8192, 4, 128, 1)]):
        shape = f"B{B} N{N} H{H} p{p}" + (" causal" if causal else "")
        flops = 12 * B * H * N * N * p * (0.5 if causal else 1.0)
        nbytes = 4 * (6 * B * N * H * p + 3 * B * H * N)
        scale = 1.0 / math.sqrt(p)
        P = torch.randn(B, N, H * p, device=dev)
        O, L, dO, dP = torch.empty_like(P), torch.empty(B, H, N, device=dev), torch.randn_like(P), torch.empty_like(P)

        def ours():
            lib("crate_cuda_mssa_forward_f32", ptr(P), ptr(O), ptr(L), B, N, H, p, scale, causal, None, S())
            lib("crate_cuda_mssa_backward_f32", ptr(P), ptr(O), ptr(L), ptr(dO), ptr(dP), B, N, H, p, scale, causal, None,
                S())

        timed("mssa", shape, "crate-ml fused (f32)", ours, flops, nbytes, "fp32")
        Pb, Ob, dOb, dPb = P.to(torch.bfloat16), O.to(torch.bfloat16), dO.to(torch.bfloat16), dP.to(torch.bfloat16)

        def ours_bf16():
            lib("crate_cuda_mssa_forward_bf16", ptr(Pb), ptr(Ob), ptr(L), B, N, H, p, scale, causal, None, S())
            lib("crate_cuda_mssa_backward_bf16", ptr(Pb), ptr(Ob), ptr(L), ptr(dOb), ptr(dPb), B, N, H, p, scale, causal,
                None, S())

        timed("mssa", shape, "crate-ml fused (bf16)", ours_bf16, flops, 2 * (6 * B * N * H * p) + 4 * 3 * B * H * N,
              "bf16")
        Pl = P.clone().requires_grad_()

        def mm_softmax():
            out, _ = R["mssa"](Pl, H, causal, scale)
            out.backward(dO)
            Pl.grad = None

        timed("mssa", shape, "torch matmul-softmax (f32)", mm_softmax, flops, nbytes, "fp32")
        if hasattr(F, "scaled_dot_product_attention"):
            for dt, nm in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
                Ps = P.to(dt).detach().requires_grad_()
                dOs = dO.to(dt)

                def sdpa(Ps=Ps, dOs=dOs):
                    w = Ps.view(B, N, H, p).transpose(1, 2)
                    out = F.scaled_dot_product_attention(w, w, w, is_causal=bool(causal))  # scale 1/sqrt(p)
                    out.transpose(1, 2).reshape(B, N, H * p).backward(dOs)
                    Ps.grad = None

                timed("mssa", shape, f"torch SDPA q=k=v ({nm})", sdpa, flops, nbytes, "fp32" if nm == "f32" else "bf16")

    # ISTA
    for T, d in ([(256, 128)] if quick else [(64 * 197, 384), (32768, 768)]):
        shape = f"T{T} d{d}"
        flops = 6 * T * d * d + 4 * d ** 3
        nbytes = 4 * (5 * T * d + 3 * d * d)
        Y, W = torch.randn(T, d, device=dev), torch.randn(d, d, device=dev) / math.sqrt(d)
        Z, G, dY, dW = torch.empty_like(Y), torch.randn_like(Y), torch.empty_like(Y), torch.empty_like(W)

        def ours():
            lib("crate_cuda_ista_forward_f32", ptr(Y), ptr(W), ptr(Z), T, d, 0.1, 0.1, S())
            lib("crate_cuda_ista_backward_f32", ptr(Y), ptr(W), ptr(Z), ptr(G), ptr(dY), ptr(dW), T, d, 0.1, S())

        timed("ista", shape, "crate-ml fused (f32)", ours, flops, nbytes, "fp32")
        Yl, Wl = Y.clone().requires_grad_(), W.clone().requires_grad_()

        def authors():
            R["ista"](Yl, Wl, 0.1, 0.1).backward(G)
            Yl.grad = Wl.grad = None

        timed("ista", shape, "torch FeedForward (f32)", authors, flops, nbytes, "fp32")

    # CRATE-alpha overcomplete ISTA (m = 4d): 4 GEMMs forward, 8 backward, each 2 T d m
    for T, d in ([(256, 128)] if quick else [(64 * 197, 384), (16384, 768)]):
        m = 4 * d
        shape = f"T{T} d{d} m{m}"
        flops = 24 * T * d * m
        nbytes = 4 * (4 * T * d + 4 * T * m + 3 * d * m)
        Y, G = torch.randn(T, d, device=dev), torch.randn(T, d, device=dev)
        D, D1 = torch.randn(d, m, device=dev) / math.sqrt(d), torch.randn(d, m, device=dev) / math.sqrt(m)
        out, A1, A2, Rs = torch.empty_like(Y), torch.empty(T, m, device=dev), torch.empty(T, m, device=dev), torch.empty_like(Y)
        dY, dD, dD1 = torch.empty_like(Y), torch.empty_like(D), torch.empty_like(D1)

        def ours():
            lib("crate_cuda_ista_overcomplete_forward_f32", ptr(Y), ptr(D), ptr(D1), ptr(out), ptr(A1), ptr(A2), ptr(Rs),
                T, d, m, 0.1, 0.1, S())
            lib("crate_cuda_ista_overcomplete_backward_f32", ptr(Y), ptr(D), ptr(D1), ptr(A1), ptr(A2), ptr(Rs), ptr(G),
                ptr(dY), ptr(dD), ptr(dD1), T, d, m, 0.1, S())

        timed("ista_overcomplete", shape, "crate-ml fused epilogues (f32)", ours, flops, nbytes, "fp32")
        Yl, Dl, D1l = (t.clone().requires_grad_() for t in (Y, D, D1))

        def authors():
            R["ista_oc"](Yl, Dl, D1l, 0.1, 0.1)[0].backward(G)
            Yl.grad = Dl.grad = D1l.grad = None

        timed("ista_overcomplete", shape, "torch CRATE-alpha ISTA (f32)", authors, flops, nbytes, "fp32")

    # coding rate
    for b, m, n in ([(8, 32, 65)] if quick else [(64 * 6, 64, 197), (64, 128, 1024), (16, 256, 4096)]):
        shape = f"b{b} m{m} n{n}"
        k, r_ = min(m, n), max(m, n)
        flops = b * (4 * k * k * r_ + k ** 3 / 3)
        nbytes = 4 * 3 * b * m * n
        Z = torch.randn(b, m, n, device=dev)
        alpha = torch.full((b,), 16.0 / r_, device=dev)
        Rv, chol, dR, dZ = torch.empty(b, device=dev), torch.empty(b, k, k, dtype=torch.float64, device=dev), \
            torch.ones(b, device=dev), torch.empty_like(Z)

        def ours():
            lib("crate_cuda_logdet_gram_forward_f32", ptr(Z), ptr(alpha), ptr(Rv), b, m, n, ptr(chol), S())
            lib("crate_cuda_logdet_gram_backward_f32", ptr(Z), ptr(alpha), ptr(dR), ptr(dZ), b, m, n, ptr(chol), S())

        timed("logdet", shape, "crate-ml fused (f32, f64 Cholesky)", ours, flops, nbytes, "fp32")
        for dt, nm in ((torch.float32, "f32"), (torch.float64, "f64")):
            Zl = Z.to(dt).detach().requires_grad_()
            al = alpha.to(dt)

            def chol_peer(Zl=Zl, al=al):
                R["logdet"](Zl, al)[0].sum().backward()
                Zl.grad = None

            timed("logdet", shape, f"torch linalg.cholesky ({nm})", chol_peer, flops, nbytes, "fp32")
        Zl = Z.clone().requires_grad_()
        eye = torch.eye(k, device=dev)

        def logdet_peer():  # the authors' vis_utils form
            Gm = Zl @ Zl.transpose(-1, -2) if m <= n else Zl.transpose(-1, -2) @ Zl
            (0.5 * torch.logdet(eye + alpha[:, None, None] * Gm)).sum().backward()
            Zl.grad = None

        timed("logdet", shape, "torch logdet (f32)", logdet_peer, flops, nbytes, "fp32")

    # GEMM
    for M, N, K in ([(256, 256, 256)] if quick else [(4096, 4096, 4096), (8192, 8192, 8192), (16384, 1024, 4096)]):
        shape = f"M{M} N{N} K{K}"
        flops = 2 * M * N * K
        A, Bm, C = torch.randn(M, K, device=dev), torch.randn(K, N, device=dev), torch.empty(M, N, device=dev)
        bits16 = {"bf16": (bf16_bits(torch, A), bf16_bits(torch, Bm)), "f16": (f16_bits(torch, A), f16_bits(torch, Bm))}
        half = {"bf16": (A.to(torch.bfloat16), Bm.to(torch.bfloat16)), "f16": (A.to(torch.float16), Bm.to(torch.float16))}
        for mode in ("f32", "tf32", "bf16", "f16"):
            esz = 2 if mode in half else 4
            nbytes = esz * (M * K + K * N) + 4 * M * N
            # f16 and bf16 have the same dense tensor-core rate on sm_80 / sm_90: one peak for both
            peak_kind = "fp32" if mode == "f32" else "bf16" if mode in half else mode
            for own in (0, 1):
                def ours(own=own, mode=mode):
                    if mode in half:
                        A16, B16 = bits16[mode]
                        lib(f"crate_cuda_gemm_{mode}", 0, 0, M, N, K, 1.0, ptr(A16), K, ptr(B16), N, 0.0, ptr(C), N, 1,
                            0, 0, 0, S())
                    else:
                        lib("crate_cuda_gemm_f32", 0, 0, M, N, K, 1.0, ptr(A), K, ptr(Bm), N, 0.0, ptr(C), N, 1, 0, 0, 0,
                            1 if mode == "tf32" else 0, S())

                try:
                    lib("crate_cuda_gemm_force_own", own)
                    be = lib.fns["crate_cuda_gemm_backend"]().decode() if lib.has("crate_cuda_gemm_backend") else "?"
                except CrateError as e:
                    be = f"unavailable: {e}"
                if not own and be.startswith("own"):
                    continue  # cuBLAS not loaded: the own GEMM is timed once, below
                timed("gemm", shape, f"crate-ml {'own' if own else 'cuBLAS'} ({mode})", ours, flops, nbytes, peak_kind)
            if lib.has("crate_cuda_gemm_force_own"):
                lib.fns["crate_cuda_gemm_force_own"](0)
            if not dv.host:
                torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
            X, Yb = half[mode] if mode in half else (A, Bm)
            timed("gemm", shape, f"torch.matmul ({mode})", lambda X=X, Yb=Yb: torch.matmul(X, Yb), flops, nbytes,
                  peak_kind)
            if not dv.host:
                torch.backends.cuda.matmul.allow_tf32 = False

    # LayerNorm
    for rows_, cols in ([(256, 384)] if quick else [(64 * 197, 384), (32768, 1024), (8192, 4096)]):
        shape = f"R{rows_} D{cols}"
        flops = 18 * rows_ * cols
        nbytes = 4 * 5 * rows_ * cols
        x, w, b = torch.randn(rows_, cols, device=dev), torch.ones(cols, device=dev), torch.zeros(cols, device=dev)
        y, mean, rstd = torch.empty_like(x), torch.empty(rows_, device=dev), torch.empty(rows_, device=dev)
        G, dx, dw, db = torch.randn_like(x), torch.empty_like(x), torch.zeros(cols, device=dev), torch.zeros(cols, device=dev)

        def ours():
            lib("crate_cuda_layernorm_forward_f32", ptr(x), ptr(w), ptr(b), ptr(y), ptr(mean), ptr(rstd), rows_, cols,
                1e-5, S())
            lib("crate_cuda_layernorm_backward_f32", ptr(x), ptr(w), ptr(mean), ptr(rstd), ptr(G), ptr(dx), ptr(dw),
                ptr(db), rows_, cols, S())

        timed("layernorm", shape, "crate-ml fused (f32)", ours, flops, nbytes, "bw")
        xl, wl, bl = x.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()

        def peer():
            F.layer_norm(xl, (cols,), wl, bl, 1e-5).backward(G)
            xl.grad = wl.grad = bl.grad = None

        timed("layernorm", shape, "torch F.layer_norm (f32)", peer, flops, nbytes, "bw")

    # TSSA
    for B, N, H, p in ([(2, 256, 2, 32)] if quick else [(64, 197, 6, 64), (8, 4096, 6, 64), (8, 16384, 6, 64)]):
        shape = f"B{B} N{N} H{H} p{p}"
        flops = 30 * B * N * H * p
        nbytes = 4 * 7 * B * N * H * p
        X, temp = torch.randn(B, N, H * p, device=dev), torch.ones(H, device=dev)
        Y, Pi = torch.empty_like(X), torch.empty(B, H, N, device=dev)
        cn, ms = torch.empty(B, H * p, device=dev), torch.empty(B, H * p, device=dev)
        G, dX, dtemp = torch.randn_like(X), torch.empty_like(X), torch.empty(H, device=dev)

        def ours():
            lib("crate_cuda_tssa_forward_f32", ptr(X), ptr(temp), ptr(Y), ptr(Pi), ptr(cn), ptr(ms), B, N, H, p, S())
            lib("crate_cuda_tssa_backward_f32", ptr(X), ptr(temp), ptr(G), ptr(Pi), ptr(cn), ptr(ms), ptr(dX), ptr(dtemp),
                B, N, H, p, S())

        timed("tssa", shape, "crate-ml fused (f32)", ours, flops, nbytes, "bw")
        Xl, tl = X.clone().requires_grad_(), temp.clone().requires_grad_()

        def authors():
            R["tssa"](Xl, tl, H)[0].backward(G)
            Xl.grad = tl.grad = None

        timed("tssa", shape, "torch AttentionTSSA (f32)", authors, flops, nbytes, "bw")

    # causal TSSA (ToST language): ToST-base shapes, T up to 4096
    for B, T, H, p in ([(2, 256, 2, 32)] if quick else [(8, 1024, 12, 64), (4, 4096, 12, 64)]):
        shape = f"B{B} T{T} H{H} p{p}"
        flops = 60 * B * T * H * p
        nbytes = 4 * 12 * B * T * H * p
        X, G = torch.randn(B, T, H * p, device=dev), torch.randn(B, T, H * p, device=dev)
        temp, bias = torch.ones(H, device=dev), torch.zeros(H, T, device=dev)
        Y, dX, dtemp, dbias = torch.empty_like(X), torch.empty_like(X), torch.empty(H, device=dev), torch.empty_like(bias)

        def ours():
            lib("crate_cuda_tssa_causal_forward_f32", ptr(X), ptr(temp), ptr(bias), ptr(Y), None, B, T, H, p, T, S())
            lib("crate_cuda_tssa_causal_backward_f32", ptr(X), ptr(temp), ptr(bias), ptr(G), ptr(dX), ptr(dtemp),
                ptr(dbias), B, T, H, p, T, S())

        timed("tssa_causal", shape, "crate-ml fused (f32)", ours, flops, nbytes, "bw")
        Xl, tl, bl = X.clone().requires_grad_(), temp.clone().requires_grad_(), bias.clone().requires_grad_()

        def authors():
            R["tssa_causal"](Xl, tl, bl, H)[0].backward(G)
            Xl.grad = tl.grad = bl.grad = None

        timed("tssa_causal", shape, "torch CausalSelfAttention_TSSA (f32)", authors, flops, nbytes, "bw")

    # cross-entropy
    for rows_, classes in ([(64, 1000)] if quick else [(4096, 50257), (65536, 1000)]):
        shape = f"R{rows_} C{classes}"
        flops = 8 * rows_ * classes
        nbytes = 4 * 3 * rows_ * classes
        x = torch.randn(rows_, classes, device=dev)
        t = torch.randint(0, classes, (rows_,), device=dev)
        t32 = t.to(torch.int32)
        loss, lse, cnt = torch.empty(rows_, device=dev), torch.empty(rows_, device=dev), torch.empty(1, dtype=torch.int64, device=dev)
        gr, dx = torch.full((rows_,), 1.0 / rows_, device=dev), torch.empty_like(x)

        def ours():
            lib("crate_cuda_cross_entropy_forward_f32", ptr(x), ptr(t32), ptr(loss), ptr(lse), ptr(cnt), rows_, classes,
                0.1, -100, S())
            lib("crate_cuda_cross_entropy_backward_f32", ptr(x), ptr(t32), ptr(lse), ptr(gr), ptr(dx), rows_, classes,
                0.1, -100, S())

        timed("xent", shape, "crate-ml fused (f32)", ours, flops, nbytes, "bw")
        xl = x.clone().requires_grad_()

        def peer():
            F.cross_entropy(xl, t, label_smoothing=0.1).backward()
            xl.grad = None

        timed("xent", shape, "torch F.cross_entropy (f32)", peer, flops, nbytes, "bw")
    return rows


# ------------------------------------------------------------------------------------ report

def fmt_num(v, spec):
    return "" if v is None else format(v, spec)


def write_report(outdir, name, meta, checks, times):
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, f"{name}.jsonl"), "w") as f:
        f.write(json.dumps({"meta": meta}) + "\n")
        for r in checks + times:
            f.write(json.dumps(r) + "\n")
    pk = meta["peaks"]
    md = [f"# CRATE CUDA kernels vs PyTorch on {meta['device']}", "",
          f"- device: {meta['device']} (sm {meta['compute_capability']}, {meta['sm_count']} SMs, "
          f"{meta['total_memory_gib']:.1f} GiB); driver {meta['driver']}; CUDA (torch) {meta['torch_cuda']}",
          f"- torch {meta['torch']}; python {meta['python']}; library {meta['library']}; GEMM backend: {meta['gemm_backend']}",
          f"- commit {meta['commit']}; {meta['date']}",
          f"- command: `{meta['command']}`",
          f"- peaks ({pk['source']}): FP32 {fmt_num(pk['fp32'], '.1f')} TFLOP/s, TF32 {fmt_num(pk['tf32'], '.1f')}, "
          f"BF16 {fmt_num(pk['bf16'], '.1f')}, HBM {fmt_num(pk['bw_tbs'], '.2f')} TB/s",
          "- timing: fwd+bwd, CUDA events around the work only, "
          f"{meta['warmup']} warm-up runs, median (min) of {meta['reps']} repeats, L2 flushed (256 MiB write) "
          "between repeats; TF32 off for torch f32 peers; napkin FLOPs/bytes in the jsonl",
          ""]
    if checks:
        npass = sum(1 for c in checks if c["pass"])
        md += [f"## Correctness: {npass}/{len(checks)} outputs pass", "",
               "Criterion per output: max|ours − f64| ≤ 2·max|torch f32 − f64| + floor·max|f64| (references: "
               "the authors' torch code in f64 and f32, TF32 off). GEMM: element-wise "
               "|C − AB| ≤ γ·(|A||B|), γ = 2⁻²⁴·max(16, 2√K) (+2⁻⁹ TF32); err column = max relative to |A||B|.", "",
               "| kernel | case | output | err ours | err torch f32 | bound | pass | note |", "|---|---|---|---:|---:|---:|---|---|"]
        for c in checks:
            md.append(f"| {c['kernel']} | {c['case']} | {c['output']} | {fmt_num(c['err_ours'], '.2e')} | "
                      f"{fmt_num(c['err_torch_f32'], '.2e')} | {fmt_num(c['bound'], '.2e')} | "
                      f"{'yes' if c['pass'] else '**NO**'} | {c['note']} |")
        md.append("")
    if times:
        md += ["## fwd+bwd timings", "",
               "| op | shape | implementation | median ms | min ms | TFLOP/s | GB/s | % of peak | speed-up of ours |",
               "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for t in times:
            if "error" in t:
                md.append(f"| {t['op']} | {t['shape']} | {t['impl']} | error: {t['error'][:100]} | | | | | |")
                continue
            ours = next((o for o in times if o["op"] == t["op"] and o["shape"] == t["shape"]
                         and o["impl"].startswith("crate-ml") and "error" not in o
                         and (t["op"] != "gemm" or o["impl"].split("(")[-1] == t["impl"].split("(")[-1])), None)
            sp = "" if t["impl"].startswith("crate-ml") or ours is None else f"{t['median_ms'] / ours['median_ms']:.2f}×"
            pct = f"{t['pct_peak']:.1f}% {t['peak_kind'].upper()}" if t.get("pct_peak") is not None else ""
            md.append(f"| {t['op']} | {t['shape']} | {t['impl']} | {t['median_ms']:.3f} | {t['min_ms']:.3f} | "
                      f"{fmt_num(t['tflops'], '.1f')} | {fmt_num(t['gbs'], '.0f')} | {pct} | {sp} |")
        md += ["", "speed-up of ours = peer median / our median (> 1: ours faster); GEMM rows compare ours in the "
               "same precision (cuBLAS-backed when it was found, else the own GEMM).", ""]
    with open(os.path.join(outdir, f"{name}.md"), "w") as f:
        f.write("\n".join(md))


def skip(msg, strict):
    print(f"cuda_torch: skipped: {msg}", flush=True)
    sys.exit(2 if strict else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", default=os.environ.get("CRATE_CUDA_LIB") or os.path.join(ROOT, "build", "Release", "libcrate_cuda.so"))
    ap.add_argument("--name", default="cuda-ops-vs-torch")
    ap.add_argument("--outdir", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--check-only", action="store_true")
    ap.add_argument("--bench-only", action="store_true")
    ap.add_argument("--strict", action="store_true", help="exit 2 (not 0) when skipped")
    ap.add_argument("--host-selftest", action="store_true", help="CPU tensors + host stand-in library (no GPU)")
    a = ap.parse_args()
    reps = a.reps or (3 if a.quick else 20)

    if not os.path.exists(a.lib):
        skip(f"{a.lib} not found (build it: cmake -S . -B build-gpu -DCRATE_CUDA=ON && cmake --build build-gpu "
             "--target crate_cuda, then --lib build-gpu/Release/libcrate_cuda.so)", a.strict)
    try:
        import torch
    except ImportError as e:
        skip(f"PyTorch is not installed for {sys.executable} ({e})", a.strict)
    if not a.host_selftest and not torch.cuda.is_available():
        skip(f"torch {torch.__version__} has no usable CUDA (torch.version.cuda={torch.version.cuda}, "
             f"device count {torch.cuda.device_count() if torch.version.cuda else 0}) on {platform.node()}", a.strict)
    for m in header_arity_mismatches(os.path.join(ROOT, "native", "include", "crate", "crate_cuda.h")):
        print(f"cuda_torch: warning: {m}")
    # cuBLAS for the library's GEMM: the copies torch ships, unless the caller chose
    tdir = os.path.join(os.path.dirname(torch.__file__), "lib")
    cands = [tdir] + [os.path.join(p, "nvidia", "cublas", "lib") for p in sys.path if p]
    for env, stem in (("CRATE_CUBLASLT_LIB", "libcublasLt.so"), ("CRATE_CUBLAS_LIB", "libcublas.so")):
        if env not in os.environ:
            for d in cands:
                hits = sorted(f for f in (os.listdir(d) if os.path.isdir(d) else []) if f.startswith(stem))
                if hits:
                    os.environ[env] = os.path.join(d, hits[-1])
                    break
    try:
        lib = Lib(a.lib)
    except OSError as e:
        skip(f"cannot load {a.lib}: {e}", a.strict)
    if lib.missing:
        print(f"cuda_torch: warning: {len(lib.missing)} entry points missing from {a.lib}: {' '.join(lib.missing)}")
    dv = Device(torch, a.host_selftest)
    if not a.host_selftest:
        torch.cuda.init()
        dev_index = torch.cuda.current_device()
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    else:
        dev_index = 0
    try:
        lib("crate_cuda_init", dev_index)
    except CrateError as e:
        skip(f"crate_cuda_init failed: {e}", a.strict)

    attrs = {} if a.host_selftest else cuda_driver_attrs()
    if a.host_selftest:
        props = {"name": "host self-test (CPU)", "cc": (0, 0), "sm": 0, "mem": 0}
    else:
        p = torch.cuda.get_device_properties(dev_index)
        props = {"name": p.name, "cc": (p.major, p.minor), "sm": p.multi_processor_count, "mem": p.total_memory}
    peaks = device_peaks(props["name"], props["cc"], attrs)
    dv_ = attrs.get("driver_version")
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": props["name"], "compute_capability": f"{props['cc'][0]}.{props['cc'][1]}", "sm_count": props["sm"],
        "total_memory_gib": props["mem"] / 2 ** 30,
        "driver": f"{dv_ // 1000}.{dv_ % 1000 // 10}" if dv_ else "unknown",
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "python": platform.python_version(),
        "library": os.path.abspath(a.lib),
        "gemm_backend": lib.fns["crate_cuda_gemm_backend"]().decode() if lib.has("crate_cuda_gemm_backend") else "?",
        "commit": git_commit(), "command": " ".join(shlex.quote(x) for x in [sys.executable] + sys.argv),
        "peaks": peaks, "reps": reps, "warmup": a.warmup, "quick": a.quick, "missing_entry_points": lib.missing,
    }
    print(f"cuda_torch: {meta['device']}, torch {meta['torch']}, driver {meta['driver']}, GEMM {meta['gemm_backend']}")
    checks, times = [], []
    if not a.bench_only:
        print("correctness (ours vs torch f64; bound = 2 x torch f32 error + floor):", flush=True)
        checks = run_checks(torch, lib, dv, a.quick)
        for c in checks:
            status = "ok  " if c["pass"] else "FAIL"
            print(f"  {status} {c['kernel']:<13} {c['case']:<40} {c['output']:<8} ours {fmt_num(c['err_ours'], '.2e'):>9} "
                  f"torch32 {fmt_num(c['err_torch_f32'], '.2e'):>9} bound {fmt_num(c['bound'], '.2e'):>9} {c['note']}",
                  flush=True)
    if not a.check_only:
        print("fwd+bwd timings:", flush=True)
        times = run_bench(torch, lib, dv, a.quick, reps, a.warmup, peaks)
    write_report(a.outdir, a.name, meta, checks, times)
    nfail = sum(1 for c in checks if not c["pass"])
    nerr = sum(1 for t in times if "error" in t)
    print(f"cuda_torch: {len(checks) - nfail} checks passed, {nfail} failed; {len(times) - nerr} timings, {nerr} errors; "
          f"wrote {os.path.join(a.outdir, a.name)}.{{md,jsonl}}")
    sys.exit(1 if nfail else 0)


if __name__ == "__main__":
    main()
