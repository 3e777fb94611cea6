#!/usr/bin/env python3
"""Measure LLM decode (time per output token) and prefill (time to first token) on one CUDA GPU.

A Llama-architecture decoder with RANDOM bf16 weights (timing does not depend
on the weight values) is run in plain PyTorch: RMSNorm, RoPE, grouped-query
attention through ``scaled_dot_product_attention`` with a preallocated static
KV cache, a SwiGLU FFN, and the classifier on the last position. Model shapes
come from ``lpu.models`` and the CSV columns from ``lpu.published`` (importing
``lpu`` loads only numpy-based modules, so this runs where only torch, numpy
and pandas are installed).

Measured, per model:

* decode: seconds per output token (ITL) at several batch sizes with a context
  of ``--context`` tokens already in the KV cache; each step is one replay of a
  CUDA graph of the whole decode step (as serving frameworks do, so that
  Python and kernel-launch overhead do not dominate); batch 1 also eager;
* prefill: seconds for one forward over a prompt (batch 1, causal attention,
  classifier on the last position): time to first token on an idle GPU;
* with ``--verify-rows``, speculative decoding's verify step: seconds for one
  forward over R new rows per user after the context (the last accepted token
  and R-1 draft tokens, causal among themselves, the classifier on every row),
  at each of ``--verify-batches`` users, one CUDA graph each; R = 1 is a plain
  decode step, for the ratio;
* the GPU's device-to-device copy bandwidth, and the weight bytes a decode
  step streams divided by the ITL as a fraction of it.

With ``--step-times N --step-times-out PATH`` the script instead records N
individual batch-1 decode-step latencies per model (context ``--context``),
for run-to-run variation, and skips the copy bandwidth, prefill and the
median-decode measurements. Three modes are written (long-format CSV
``system,model,mode,batch,context,step,latency_s,gpu,torch_version,date``):

* ``eager``: one eager decode step between two CUDA events, synchronising
  after every step (the GPU starts each step idle);
* ``graph``: one CUDA-graph replay of the step, timed the same way;
* ``eager_nosync_blk10``: eager steps issued back to back with no per-step
  synchronisation (a plain loop with nothing else on the host); the host wall
  clock over a block of 10 steps, synchronised at the block's end, divided by
  10. Each row is one block (N blocks = 10 N steps); ``step`` is the block index.

Usage::

    python3 scripts/measure_gpu.py --models llama2-7b,llama3-8b --out results.csv
    python3 scripts/measure_gpu.py --dry-run      # tiny model on the CPU, float32: exercises the code paths
    python3 scripts/measure_gpu.py --models llama2-7b --step-times 1000 --step-times-out lpu/data/gpu_step_times.csv
    python3 scripts/measure_gpu.py --models llama2-7b,llama2-70b --prompts "" --batches "" --verify-rows 1,2,3,5,9 --out v.csv

Only torch, numpy and the standard library are needed.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import gc
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a checkout, installed or not; `import lpu` loads only numpy-based modules
from lpu import models as lpu_models  # noqa: E402
from lpu import published  # noqa: E402

HEADER = published.COLUMNS
DATE = datetime.date.today().isoformat()  # of the measurement


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------
def _rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    if hasattr(F, "rms_norm"):
        return F.rms_norm(x, (x.shape[-1],), w, eps)
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding, rotate-half form. x: [B, T, H, hd]; cos, sin: [T, hd/2]."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)


class Llama:
    """A Llama decoder with random weights allocated straight on the device.

    Fused projections (wq|wk|wv and w1|w3) as serving frameworks use: the same
    bytes and FLOPs as separate matrices, fewer kernel launches.
    """

    def __init__(self, cfg, device: str, dtype: torch.dtype, max_pos: int, seed: int = 0):
        if cfg.is_moe:
            raise ValueError(f"{cfg.name}: mixture-of-experts models are not supported by this script")
        self.cfg, self.device, self.dtype = cfg, device, dtype
        torch.manual_seed(seed)

        def w(*shape, std=0.02):
            return torch.empty(*shape, device=device, dtype=dtype).normal_(std=std)

        def ones(n):
            return torch.ones(n, device=device, dtype=dtype)

        d, kv, hid, qd = cfg.dim, cfg.kv_dim, cfg.hidden_dim, cfg.q_dim
        self.tok_emb = w(cfg.vocab_size, d)
        self.layers = []
        for _ in range(cfg.n_layers):
            self.layers.append({
                "attn_norm": ones(d),
                "wqkv": w(qd + 2 * kv, d),
                "wo": w(d, qd),
                "ffn_norm": ones(d),
                "w13": w(2 * hid, d),
                "w2": w(d, hid),
            })
        self.norm = ones(d)
        self.cls = self.tok_emb if cfg.tied_embeddings else w(cfg.vocab_size, d)
        # RoPE tables for every position up to max_pos
        hd = cfg.head_dim
        inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, device=device, dtype=torch.float32) / hd))
        ang = torch.outer(torch.arange(max_pos, device=device, dtype=torch.float32), inv)
        self.cos, self.sin = ang.cos().to(dtype), ang.sin().to(dtype)
        self.cache_k: list[torch.Tensor] = []
        self.cache_v: list[torch.Tensor] = []

    def param_bytes(self) -> int:
        ts = [self.tok_emb, self.norm] + [t for layer in self.layers for t in layer.values()]
        if not self.cfg.tied_embeddings:
            ts.append(self.cls)
        return sum(t.numel() * t.element_size() for t in ts)

    def decode_stream_bytes(self) -> int:
        """Weight bytes one decode step reads: all but the token-embedding table (one row per user is gathered)."""
        emb = 0 if self.cfg.tied_embeddings else self.tok_emb.numel() * self.tok_emb.element_size()
        return self.param_bytes() - emb

    def alloc_cache(self, batch: int, length: int):
        self.free_cache()
        shape = (batch, self.cfg.n_kv_heads, length, self.cfg.head_dim)
        for _ in range(self.cfg.n_layers):
            self.cache_k.append(torch.zeros(shape, device=self.device, dtype=self.dtype))
            self.cache_v.append(torch.zeros(shape, device=self.device, dtype=self.dtype))

    def free_cache(self):
        self.cache_k, self.cache_v = [], []

    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, start_pos: int, all_logits: bool = False) -> torch.Tensor:
        """tokens [B, T] at positions start_pos..start_pos+T-1; returns logits [B, vocab] of the last position
        ([B, T, vocab] of every position with ``all_logits``).

        T > 1 at start_pos == 0 (prefill): causal attention over the prompt.
        T == 1 (decode) attends over the cache's first start_pos+1 positions.
        T > 1 at start_pos > 0 (a verify step): each new row attends over the cache and the new rows up to itself.
        """
        cfg = self.cfg
        B, T = tokens.shape
        H, KV, hd, kv, qd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.kv_dim, cfg.q_dim
        cos, sin = self.cos[start_pos:start_pos + T], self.sin[start_pos:start_pos + T]
        mask = None
        if T > 1 and start_pos > 0:  # [T, start_pos + T]: row i sees positions <= start_pos + i
            seen = torch.arange(start_pos + T, device=tokens.device)
            mask = seen[None, :] <= start_pos + torch.arange(T, device=tokens.device)[:, None]
        h = F.embedding(tokens, self.tok_emb)  # [B, T, d]
        for i, L in enumerate(self.layers):
            x = _rms_norm(h, L["attn_norm"], cfg.norm_eps)
            qkv = F.linear(x, L["wqkv"])
            q, k, v = qkv.split([qd, kv, kv], dim=-1)
            q = _rope(q.view(B, T, H, hd), cos, sin).transpose(1, 2)  # [B, H, T, hd]
            k = _rope(k.view(B, T, KV, hd), cos, sin).transpose(1, 2)  # [B, KV, T, hd]
            v = v.view(B, T, KV, hd).transpose(1, 2)
            ck, cv = self.cache_k[i], self.cache_v[i]
            ck[:B, :, start_pos:start_pos + T] = k
            cv[:B, :, start_pos:start_pos + T] = v
            if T == 1:
                keys, vals = ck[:B, :, :start_pos + 1], cv[:B, :, :start_pos + 1]
                a = _sdpa(q, keys, vals, causal=False)
            elif start_pos == 0:
                a = _sdpa(q, k, v, causal=True)
            else:
                keys, vals = ck[:B, :, :start_pos + T], cv[:B, :, :start_pos + T]
                a = _sdpa(q, keys, vals, causal=False, mask=mask)
            h = h + F.linear(a.transpose(1, 2).reshape(B, T, qd), L["wo"])
            x = _rms_norm(h, L["ffn_norm"], cfg.norm_eps)
            g, u = F.linear(x, L["w13"]).chunk(2, dim=-1)
            h = h + F.linear(F.silu(g) * u, L["w2"])
        h = _rms_norm(h if all_logits else h[:, -1], self.norm, cfg.norm_eps)
        return F.linear(h, self.cls)


_GQA_OK = None


def _sdpa(q, k, v, causal: bool, mask: torch.Tensor | None = None):
    global _GQA_OK
    if q.shape[1] != k.shape[1]:
        if _GQA_OK is not False:
            try:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=True)
                _GQA_OK = True
                return out
            except TypeError:
                _GQA_OK = False
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------
class Timer:
    """Times one call of fn, with CUDA events on a GPU and perf_counter on the CPU."""

    def __init__(self, device: str):
        self.cuda = device == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def median(self, fn, n: int, warmup: int) -> float:
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        if self.cuda:
            evs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
            for s, e in evs:
                s.record()
                fn()
                e.record()
            torch.cuda.synchronize()
            times = [s.elapsed_time(e) / 1e3 for s, e in evs]
        else:
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        return statistics.median(times)


def copy_bandwidth(device: str, nbytes: int, timer: Timer) -> float:
    """Device-to-device copy bandwidth in bytes/s (bytes read + written per second)."""
    n = nbytes // 2
    src = torch.empty(n, device=device, dtype=torch.bfloat16).normal_()
    dst = torch.empty_like(src)
    t = timer.median(lambda: dst.copy_(src), n=20, warmup=3)
    return 2 * n * 2 / t


def make_graph_step(model: Llama, tokens: torch.Tensor, pos: int, all_logits: bool = False):
    """Capture one step (static tokens, fixed position) in a CUDA graph; returns (graph, its output)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            model.forward(tokens, pos, all_logits)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = model.forward(tokens, pos, all_logits)
    return g, out


def measure_model(name: str, cfg, args, device: str, dtype, timer: Timer, copy_bw: float | None):
    """Returns a list of result dicts for one model."""
    res = []
    max_prompt = max(args.prompts) if args.prompts else 0
    max_pos = max(max_prompt, args.context + max(args.verify_rows, default=1)) + 8
    t0 = time.perf_counter()
    model = Llama(cfg, device, dtype, max_pos)
    timer.sync()
    wbytes, sbytes = model.param_bytes(), model.decode_stream_bytes()
    print(f"\n== {name}: {wbytes / 1e9:.2f} GB of weights ({sbytes / 1e9:.2f} GB streamed per decode step), "
          f"allocated in {time.perf_counter() - t0:.1f} s", flush=True)
    gen = torch.Generator(device="cpu").manual_seed(1)

    def toks(b, t):
        return torch.randint(0, cfg.vocab_size, (b, t), generator=gen).to(device)

    try:
        # ---- prefill (batch 1) ----
        if args.prompts:
            model.alloc_cache(1, max_prompt)
            for P in args.prompts:
                x = toks(1, P)
                try:
                    t = timer.median(lambda x=x: model.forward(x, 0), n=args.prefill_iters, warmup=2)
                except torch.cuda.OutOfMemoryError as e:
                    print(f"   prefill {P}: out of memory, skipped ({str(e).splitlines()[0]})", flush=True)
                    _cleanup(device)
                    continue
                graph = timer.cuda and not args.no_graph
                print(f"   prefill  prompt {P:5d} (eager): {t * 1e3:9.2f} ms  ({P / t:,.0f} tok/s)", flush=True)
                res.append(dict(model=name, metric="ttft_s", value=t, batch=1, tokens=P, mode="eager", csv=not graph))
                if graph:  # the same forward as one CUDA graph: no Python / launch overhead
                    try:
                        g, _out = make_graph_step(model, x, 0)
                        t = timer.median(g.replay, n=args.prefill_iters, warmup=2)
                        del g, _out
                    except torch.cuda.OutOfMemoryError as e:
                        print(f"   prefill {P} (graph): out of memory, skipped ({str(e).splitlines()[0]})", flush=True)
                        res[-1]["csv"] = True
                        _cleanup(device)
                        continue
                    print(f"   prefill  prompt {P:5d} (graph): {t * 1e3:9.2f} ms  ({P / t:,.0f} tok/s)", flush=True)
                    res.append(dict(model=name, metric="ttft_s", value=t, batch=1, tokens=P, mode="graph", csv=True))
            model.free_cache()
            _cleanup(device)

        # ---- decode ----
        ctx = args.context
        bmax = max(args.batches, default=0)
        model.alloc_cache(bmax, ctx + 1)
        kv_step = lambda b: b * (ctx + 1) * cfg.kv_bytes_per_token("bf16" if dtype == torch.bfloat16 else "fp32")
        if 1 in args.batches and args.eager and timer.cuda and not args.no_graph:
            x = toks(1, 1)
            t = timer.median(lambda: model.forward(x, ctx), n=args.decode_iters, warmup=5)
            res.append(_decode_row(name, t, 1, ctx, "eager", sbytes, kv_step(1), copy_bw))
        for b in args.batches:
            x = toks(b, 1)
            try:
                if timer.cuda and not args.no_graph:
                    g, _out = make_graph_step(model, x, ctx)
                    t = timer.median(g.replay, n=args.decode_iters, warmup=5)
                    del g, _out
                    mode = "graph"
                else:
                    t = timer.median(lambda x=x: model.forward(x, ctx), n=args.decode_iters, warmup=3)
                    mode = "eager"
            except torch.cuda.OutOfMemoryError as e:
                print(f"   decode batch {b}: out of memory, skipped ({str(e).splitlines()[0]})", flush=True)
                _cleanup(device)
                continue
            res.append(_decode_row(name, t, b, ctx, mode, sbytes, kv_step(b), copy_bw))
        model.free_cache()
        _cleanup(device)

        # ---- verify steps: R rows per user after ctx cached positions, logits on every row ----
        for b in args.verify_batches if args.verify_rows else ():
            model.alloc_cache(b, ctx + max(args.verify_rows))
            first = None
            for R in args.verify_rows:
                x = toks(b, R)
                if timer.cuda and not args.no_graph:
                    g, _out = make_graph_step(model, x, ctx, all_logits=True)
                    t = timer.median(g.replay, n=args.decode_iters, warmup=5)
                    del g, _out
                else:
                    t = timer.median(lambda x=x: model.forward(x, ctx, all_logits=True), n=args.decode_iters, warmup=3)
                res.append(dict(model=name, metric="verify_s", value=t, batch=b, tokens=ctx, rows=R,
                                mode="graph" if timer.cuda and not args.no_graph else "eager"))
                first = first or t
                print(f"   verify   batch {b:3d}, {R:2d} rows ({res[-1]['mode']:5s}): {t * 1e3:8.3f} ms  "
                      f"({t / first:.3f}x {args.verify_rows[0]} row(s))", flush=True)
            model.free_cache()
            _cleanup(device)
        for r in res:
            if r["metric"] == "itl_s":
                bw = f"  weights {r['w_bw'] / 1e9:7.0f} GB/s" + (f" = {r['frac']:.0%} of copy bw" if copy_bw else "")
                print(f"   decode   batch {r['batch']:3d} ({r['mode']:5s}): {r['value'] * 1e3:8.3f} ms/token{bw}", flush=True)
        if timer.cuda:
            print(f"   peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB", flush=True)
    finally:
        model.free_cache()
        model = None  # free the GPU memory before the next model
        _cleanup(device)
    return res


def _decode_row(name, t, b, ctx, mode, sbytes, kvbytes, copy_bw):
    w_bw = sbytes / t
    return dict(model=name, metric="itl_s", value=t, batch=b, tokens=ctx, mode=mode, w_bw=w_bw,
                wkv_bw=(sbytes + kvbytes) / t, frac=(w_bw / copy_bw) if copy_bw else None,
                frac_kv=((sbytes + kvbytes) / t / copy_bw) if copy_bw else None)


def _cleanup(device):
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def sig4(v: float) -> str:
    return f"{float(f'{v:.4g}'):.10g}"


def csv_rows(results, gpu_name: str, copy_bw: float | None, context: int, precision: str = "bf16"):
    system = system_name(gpu_name)
    tv = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    source = f"measured here: scripts/measure_gpu.py on {gpu_name} (device lent to this project)"
    rows = []
    for r in results:
        if not r.get("csv", True):
            continue
        if r["metric"] == "itl_s":
            how = "CUDA graph decode" if r["mode"] == "graph" else "eager decode (no CUDA graph)"
            cond = (f"measured: PyTorch {tv} {precision}, {how}, random weights, SDPA attention, context {context}, "
                    f"batch {r['batch']}, 1 GPU, no serving stack or network")
            if r["frac"] is not None:
                cond += (f"; weights streamed at {r['w_bw'] / 1e9:.0f} GB/s = {r['frac']:.0%} of measured "
                         f"device-to-device copy bandwidth {copy_bw / 1e9:.0f} GB/s")
        elif r["metric"] == "verify_s":
            how = "CUDA graph" if r["mode"] == "graph" else "eager"
            cond = (f"measured: PyTorch {tv} {precision}, {how} of one speculative verify step: {r['rows']} new row(s) "
                    f"(output_tokens; the last accepted token and {r['rows'] - 1} draft token(s)) after a context of "
                    f"{context} cached tokens, causal among themselves, the classifier on every row, random weights, SDPA "
                    f"attention with a boolean mask for the causal rows, batch {r['batch']} (users, each with its own rows), 1 GPU, "
                    "no serving stack or network")
        else:
            how = "CUDA graph prefill (Python/launch overhead excluded)" if r["mode"] == "graph" else "eager prefill"
            cond = (f"measured: PyTorch {tv} {precision}, {how}, random weights, SDPA causal attention, "
                    f"prompt {r['tokens']}, batch 1, time of one forward incl. classifier on the last position "
                    f"(time to first token on an idle GPU), 1 GPU, no serving stack, queueing or network")
        rows.append({"system": system, "model": r["model"], "metric": r["metric"], "value": sig4(r["value"]),
                     "unit": "s", "precision": precision, "chips": "1", "batch": str(r["batch"]),
                     "prompt_tokens": str(r["tokens"]), "output_tokens": str(r.get("rows", "")), "conditions": cond, "date": DATE,
                     "source": source, "role": "validation"})
    return rows


STEP_HEADER = ["system", "model", "mode", "batch", "context", "step", "latency_s", "gpu", "torch_version", "date"]
STEP_BLOCK = 10  # steps per wall-clock block in the eager_nosync mode


def system_name(gpu_name: str) -> str:
    return "h100" if "H100" in gpu_name else "h200" if "H200" in gpu_name else gpu_name.lower().replace(" ", "-")


def step_times_model(name: str, cfg, n: int, ctx: int, device: str, dtype, use_graph: bool, warmup: int = 20):
    """N single decode-step latencies (batch 1, context ctx) per mode; returns {mode: [seconds, ...]}."""
    cuda = device == "cuda"
    model = Llama(cfg, device, dtype, ctx + 9)
    model.alloc_cache(1, ctx + 1)
    x = torch.randint(0, cfg.vocab_size, (1, 1), generator=torch.Generator().manual_seed(1)).to(device)
    out: dict[str, list[float]] = {}

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def per_step(fn) -> list[float]:
        """Each step timed alone, synchronised after it: CUDA events on a GPU, perf_counter on the CPU."""
        for _ in range(warmup):
            fn()
        sync()
        gc.collect()
        ts = []
        if cuda:
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            for _ in range(n):
                s.record()
                fn()
                e.record()
                e.synchronize()
                ts.append(s.elapsed_time(e) / 1e3)
        else:
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
        return ts

    eager = lambda: model.forward(x, ctx)
    try:
        t0 = time.perf_counter()
        out["eager"] = per_step(eager)
        print(f"   eager (event-timed, sync per step): {n} steps in {time.perf_counter() - t0:.1f} s", flush=True)
        if cuda and use_graph:
            g, _o = make_graph_step(model, x, ctx)
            t0 = time.perf_counter()
            out["graph"] = per_step(g.replay)
            print(f"   graph (event-timed, sync per step): {n} steps in {time.perf_counter() - t0:.1f} s", flush=True)
            del g, _o
        # eager, no per-step synchronisation: host wall clock per block of STEP_BLOCK steps
        for _ in range(warmup):
            eager()
        sync()
        gc.collect()
        ts = []
        t0 = time.perf_counter()
        for _ in range(n):
            b0 = time.perf_counter()
            for _ in range(STEP_BLOCK):
                eager()
            sync()
            ts.append((time.perf_counter() - b0) / STEP_BLOCK)
        out[f"eager_nosync_blk{STEP_BLOCK}"] = ts
        print(f"   eager (no per-step sync, wall clock per {STEP_BLOCK}-step block): {n} blocks in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        model.free_cache()
        model = None
        _cleanup(device)
    return out


def step_stats(ts: list[float]) -> dict:
    a = np.asarray(ts)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return dict(n=a.size, p50=p50, p90=p90, p99=p99, max=a.max(), tail=(p99 - p50) / p50, cv=a.std() / a.mean())


def run_step_times(args, names, cfgs, device, dtype, gpu):
    system = system_name(gpu)
    rows = []
    print(f"\nstep times: {args.step_times} per mode, batch 1, context {args.context}", flush=True)
    for name in names:
        print(f"\n== {name}", flush=True)
        res = step_times_model(name, cfgs[name], args.step_times, args.context, device, dtype, not args.no_graph)
        print(f"   {'mode':20s} {'p50 ms':>9s} {'p90 ms':>9s} {'p99 ms':>9s} {'max ms':>9s} {'(p99-p50)/p50':>14s} {'CV':>8s}")
        for mode, ts in res.items():
            st = step_stats(ts)
            print(f"   {mode:20s} {st['p50'] * 1e3:9.4f} {st['p90'] * 1e3:9.4f} {st['p99'] * 1e3:9.4f} "
                  f"{st['max'] * 1e3:9.4f} {st['tail']:14.2%} {st['cv']:8.2%}", flush=True)
            for i, t in enumerate(ts):
                rows.append({"system": system, "model": name, "mode": mode, "batch": 1, "context": args.context,
                             "step": i, "latency_s": f"{t:.5g}", "gpu": gpu, "torch_version": torch.__version__,
                             "date": DATE})
    if args.step_times_out:
        write_csv(args.step_times_out, STEP_HEADER, rows)
    return rows


def write_csv(path: str, header: list[str], rows: list[dict]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        wr.writeheader()
        wr.writerows(rows)
    print(f"wrote {len(rows)} rows to {path}")


def check_consistency(model: Llama, T: int, device: str, rows: int = 4):
    """Decode, and a verify step of ``rows`` rows, after a prefill of T tokens must give the logits of one prefill
    over all the tokens (float32 check)."""
    toks = torch.randint(0, model.cfg.vocab_size, (2, T + rows), device=device)
    model.alloc_cache(2, T + rows)
    full = model.forward(toks, 0, all_logits=True)  # [2, T + rows, vocab]
    scale = full.abs().max().item()
    model.alloc_cache(2, T + rows)
    model.forward(toks[:, :T], 0)
    step = model.forward(toks[:, T:T + 1], T)
    err = (full[:, T] - step).abs().max().item() / scale
    print(f"consistency check (prefill {T + 1} vs prefill {T} + decode 1): max rel diff {err:.2e}")
    verify = model.forward(toks[:, T:], T, all_logits=True)  # rewrites position T, then T+1.. after it
    model.free_cache()
    verr = (full[:, T:] - verify).abs().max().item() / scale
    print(f"consistency check (prefill {T + rows} vs prefill {T} + a {rows}-row verify step): max rel diff {verr:.2e}")
    if max(err, verr) > 1e-4:
        raise SystemExit("consistency check FAILED")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="llama2-7b,llama3-8b,llama2-13b", help="comma-separated preset names from lpu/models.py")
    ap.add_argument("--batches", default="1,8,32", help="decode batch sizes; empty for none")
    ap.add_argument("--verify-rows", default="", help="rows per user of the speculative verify steps to time, e.g. 1,2,3,5,9")
    ap.add_argument("--verify-batches", default="1", help="users of the verify steps (each with its own rows and cache)")
    ap.add_argument("--prompts", default="128,550,2048", help="prefill prompt lengths (batch 1); empty for none")
    ap.add_argument("--context", type=int, default=550, help="tokens already in the KV cache when decoding")
    ap.add_argument("--decode-iters", type=int, default=50)
    ap.add_argument("--prefill-iters", type=int, default=7)
    ap.add_argument("--no-eager", dest="eager", action="store_false", help="skip the eager batch-1 decode")
    ap.add_argument("--no-graph", action="store_true", help="decode without CUDA graphs")
    ap.add_argument("--copy-gib", type=float, default=2.0, help="size of the tensor copied to measure bandwidth")
    ap.add_argument("--out", help="write CSV rows (lpu/data/published.csv schema, with header) here")
    ap.add_argument("--step-times", type=int, default=0, metavar="N",
                    help="instead of the usual measurements, record N single batch-1 decode-step latencies per model "
                         "and mode (eager, graph, eager without per-step sync in 10-step blocks)")
    ap.add_argument("--step-times-out", metavar="PATH", help="CSV for --step-times (long format, one row per step)")
    ap.add_argument("--dry-run", action="store_true", help="tiny model (stories260K) in float32 on the CPU: exercises the code paths")
    args = ap.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.prompts = [int(p) for p in args.prompts.split(",") if p]
    args.verify_rows = [int(r) for r in args.verify_rows.split(",") if r]
    args.verify_batches = [int(b) for b in args.verify_batches.split(",") if b]
    if any(n < 1 for n in args.verify_rows + args.verify_batches):
        ap.error(f"--verify-rows and --verify-batches must be positive integers, got {args.verify_rows} and {args.verify_batches}")
    mm = lpu_models

    if args.step_times_out and not args.step_times:
        ap.error("--step-times-out needs --step-times N")
    if args.dry_run:
        device, dtype, gpu = "cpu", torch.float32, "CPU (dry run)"
        args.models = "stories260K"
        args.prompts = [p for p in args.prompts if p <= 400] + [256]
        args.context = min(args.context, 300)
        args.decode_iters, args.prefill_iters, args.copy_gib = 5, 3, 0.05
        args.step_times = min(args.step_times, 20)
        torch.manual_seed(0)
        check_consistency(Llama(mm.get("stories260K"), device, dtype, 512), 37, device)
    else:
        if not torch.cuda.is_available():
            raise SystemExit("error: no CUDA GPU available (torch.cuda.is_available() is False); "
                             "use --dry-run to exercise the code on the CPU")
        device, dtype = "cuda", torch.bfloat16
        gpu = torch.cuda.get_device_name(0)
        torch.backends.cuda.matmul.allow_tf32 = True
    timer = Timer(device)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    cfgs = {n: mm.get(n) for n in names}  # unknown names fail here, before any GPU work

    print(f"device: {gpu}; torch {torch.__version__}; numpy {np.__version__}")
    if device == "cuda":
        free, total = torch.cuda.mem_get_info()
        print(f"GPU memory: {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB")
    if args.step_times:
        return run_step_times(args, names, cfgs, device, dtype, gpu)
    copy_bw = copy_bandwidth(device, int(args.copy_gib * 2**30), timer)
    _cleanup(device)
    print(f"device-to-device copy bandwidth ({args.copy_gib:g} GiB tensor, read+write): {copy_bw / 1e9:,.0f} GB/s")

    results = []
    for n in names:
        try:
            results += measure_model(n, cfgs[n], args, device, dtype, timer, copy_bw)
        except torch.cuda.OutOfMemoryError as e:
            print(f"\n!! {n}: out of GPU memory, model skipped ({str(e).splitlines()[0]})", flush=True)
            _cleanup(device)

    # ---- table ----
    print(f"\n{'model':14s} {'metric':8s} {'batch':>5s} {'tokens':>6s} {'mode':>7s} {'value (ms)':>11s} {'wt GB/s':>8s} {'%copy':>6s} {'w+kv %copy':>10s}")
    for r in results:
        extra = ""
        if r["metric"] == "itl_s":
            extra = f" {r['w_bw'] / 1e9:8.0f} {r['frac']:6.1%} {r['frac_kv']:10.1%}"
        note = "" if r.get("csv", True) else "  (not in CSV)"
        if r["metric"] == "verify_s":
            extra = f"  ({r['rows']} rows)"
        print(f"{r['model']:14s} {r['metric']:8s} {r['batch']:5d} {r['tokens']:6d} {r['mode']:>7s} {r['value'] * 1e3:11.3f}{extra}{note}")
    print(f"copy bandwidth: {copy_bw / 1e9:,.0f} GB/s")

    if args.out:
        write_csv(args.out, HEADER, csv_rows(results, gpu, copy_bw, args.context, "bf16" if dtype == torch.bfloat16 else "fp32"))
    return results


if __name__ == "__main__":
    main()
