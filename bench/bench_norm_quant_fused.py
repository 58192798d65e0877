"""
Copyright (c) 2026 by FlashInfer team.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

  http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.

Benchmark: fused (add +) RMSNorm / Gemma-RMSNorm / LayerNorm -> FP8 / MXFP8 vs the upstream
single ops and unfused pairs, side by side on one GPU.

Each measurement captures ``--calls`` back-to-back calls in a CUDA graph (rotating over
several input/output buffer sets when the working set fits in L2) and reports the median of
``triton.testing.do_bench(graph.replay)`` divided by the number of calls, i.e. the device time
per call without Python launch overhead. ``--eager`` additionally reports plain
``do_bench`` medians for T <= 16 (host overhead included).

Writes ``bench_norm_quant_fused.json`` and ``bench_norm_quant_fused.md`` into ``--out``.

Note on the MXFP8 unfused baseline: on SM90 ``flashinfer.mxfp8_quantize`` (CUDA backend) is
compiled only for SM100+ and is a silent no-op, so its time is not real work. The unfused
pair is therefore reported as ``norm (+ F.pad) + ideal quantizer`` where the quantizer is
charged its bytes (read bf16, write fp8 + scales) at the measured copy bandwidth, a lower
bound for any real quantizer kernel.
"""

import argparse
import itertools
import json
import math
import os
import subprocess

import torch
import torch.nn.functional as F
from triton.testing import do_bench

import flashinfer
from flashinfer.norm import get_norm_quant_module
from flashinfer.norm import _use_cuda_norm
from flashinfer.norm.norm_quant import _RMSNORM, _norm_fp8_quantize

UPSTREAM_COMMIT = flashinfer.__git_commit__  # the release the series is applied to
L2_BYTES = 50 * 1024 * 1024


def graph_time_us(make_call, n_sets, calls):
    """make_call(i) -> zero-arg callable using buffer set i."""
    fns = [make_call(i % n_sets) for i in range(calls)]
    for f in fns[: min(calls, n_sets)]:
        f()  # warm up / JIT
    torch.cuda.synchronize()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for f in fns[:n_sets]:
            f()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for f in fns:
            f()
    ms = do_bench(g.replay, warmup=25, rep=100, return_mode="median")
    return ms * 1e3 / calls


def eager_time_us(fn):
    return do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e3


def copy_ceiling():
    x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    ms = do_bench(lambda: y.copy_(x), warmup=25, rep=200, return_mode="median")
    r = {"copy_GBps": 2 * x.numel() / ms / 1e6}
    xf = x.view(torch.float32)
    ms = do_bench(lambda: xf.sum(), warmup=10, rep=100, return_mode="median")
    r["read_GBps(sum)"] = x.numel() / ms / 1e6
    ms = do_bench(lambda: x.fill_(1), warmup=10, rep=100, return_mode="median")
    r["write_GBps(fill)"] = x.numel() / ms / 1e6
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--hidden", type=int, nargs="+", default=[2880, 4096, 7168])
    ap.add_argument(
        "--tokens",
        type=int,
        nargs="+",
        default=[1, 16, 128, 1024, 4096, 8192, 16384, 32768],
    )
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--eager", action="store_true")
    ap.add_argument(
        "--series-json",
        help="series.json of `make gpu-test`: records the series hash in the results",
    )
    args = ap.parse_args()

    dev = "cuda"
    dt = torch.bfloat16
    env = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "flashinfer": flashinfer.__version__,
        "upstream_commit": UPSTREAM_COMMIT,
        "upstream_norm_backend": "cuda"
        if _use_cuda_norm(torch.device(dev))
        else "cute-dsl",
        "method": f"CUDA graph of {args.calls} calls, do_bench median / calls",
    }
    try:
        env["driver"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except Exception:  # noqa: BLE001
        env["driver"] = "?"
    if args.series_json:
        with open(args.series_json) as f:
            env["series"] = json.load(f)
    env.update(copy_ceiling())
    copy_bw = env["copy_GBps"]
    print(env, flush=True)

    rows = []
    scale = torch.tensor([0.5], device=dev)
    for H in args.hidden:
        align = 128 if H % 128 else 32
        Hp = (H + align - 1) // align * align
        w = torch.randn(H, device=dev, dtype=dt)
        g = torch.randn(H, device=dev, dtype=torch.float32)
        b = torch.randn(H, device=dev, dtype=torch.float32)
        for T in args.tokens:
            per_set = T * H * 2 * 4  # in, res, normed, out (upper bound)
            n_sets = max(1, min(args.calls, math.ceil(2 * L2_BYTES / per_set)))
            xs = [torch.randn(T, H, device=dev, dtype=dt) for _ in range(n_sets)]
            rs = [torch.randn(T, H, device=dev, dtype=dt) for _ in range(n_sets)]
            nos = [torch.empty(T, H, device=dev, dtype=dt) for _ in range(n_sets)]
            o8s = [
                torch.empty(T, H, device=dev, dtype=torch.float8_e4m3fn)
                for _ in range(n_sets)
            ]
            sf_bytes = ((T + 127) // 128 * 128) * ((Hp // 32 + 3) // 4 * 4)
            E = T * H

            def t(mk):
                return graph_time_us(mk, n_sets, args.calls)

            same_copy: dict[int, float] = {}

            def same_bytes_copy_us(nbytes):
                """A plain device copy of the same bytes (nbytes / 2 read, nbytes / 2 written), timed
                like the copy ceiling: eager copy_ (cudaMemcpyAsync) under do_bench, rotating over the
                buffer sets. Not a graph: captured, the copy may run on a copy engine (2.8 TB/s for
                1.2 GB on the H200); nor a dtype-converting copy_, whose byte-wise kernel ran at a third
                of the ceiling."""
                if nbytes not in same_copy:
                    n = nbytes // 2
                    src = [torch.empty(n, device=dev, dtype=torch.uint8) for _ in range(n_sets)]
                    dst = [torch.empty_like(x) for x in src]
                    turn = itertools.cycle(range(n_sets))

                    def copy():
                        i = next(turn)
                        dst[i].copy_(src[i])

                    same_copy[nbytes] = eager_time_us(copy)
                return same_copy[nbytes]

            def rec(op, impl, us, nbytes):
                r = {
                    "H": H,
                    "T": T,
                    "op": op,
                    "impl": impl,
                    "us": round(us, 3),
                    "GBps": round(nbytes / us / 1e3, 1),
                    "pct_copy": round(100 * nbytes / us / 1e3 / copy_bw, 1),
                }
                if impl.startswith("ours"):
                    copy_us = same_bytes_copy_us(nbytes)
                    r["same_bytes_copy_us"] = round(copy_us, 3)
                    r["pct_same_bytes_copy"] = round(100 * copy_us / us, 1)
                rows.append(r)
                print(r, flush=True)
                return us

            def pair(op, impl, parts, nbytes, us_ours):
                """An unfused upstream sequence (measured parts + ideal parts) beside our fused op."""
                us = sum(parts.values())
                rec(op, impl, us, nbytes)
                rows[-1]["parts_us"] = {k: round(v, 3) for k, v in parts.items()}
                rows[-1]["speedup_ours"] = round(us / us_ours, 3)

            # ---------------- MXFP8 ----------------
            mx_out = T * Hp + sf_bytes
            # add + RMSNorm -> MXFP8 + bf16 normed out (gpt-oss MoE input + router input)
            us_f = rec(
                "add+rms->mxfp8+normed",
                "ours",
                t(
                    lambda i: (
                        lambda: flashinfer.fused_add_rmsnorm_mxfp8_quant(
                            xs[i], rs[i], w, 1e-5, True, align, normed_out=nos[i]
                        )
                    )
                ),
                E * 2 * 3 + 2 * E + mx_out,
            )
            us_add = rec(
                "add+rms->mxfp8",
                "ours",
                t(
                    lambda i: (
                        lambda: flashinfer.fused_add_rmsnorm_mxfp8_quant(
                            xs[i], rs[i], w, 1e-5, True, align
                        )
                    )
                ),
                E * 2 * 3 + mx_out,
            )
            us_rms = rec(
                "rms->mxfp8",
                "ours",
                t(
                    lambda i: (
                        lambda: flashinfer.rmsnorm_mxfp8_quant(
                            xs[i], w, 1e-5, True, align
                        )
                    )
                ),
                E * 2 + mx_out,
            )
            # RMSNorm -> MXFP8 + bf16 normed out (router input, no residual)
            us_rms_n = rec(
                "rms->mxfp8+normed",
                "ours",
                t(
                    lambda i: (
                        lambda: flashinfer.rmsnorm_mxfp8_quant(
                            xs[i], w, 1e-5, True, align, normed_out=nos[i]
                        )
                    )
                ),
                E * 2 * 2 + mx_out,
            )
            us_gemma_mx = rec(
                "gemma_add+rms->mxfp8",
                "ours",
                t(
                    lambda i: (
                        lambda: flashinfer.gemma_fused_add_rmsnorm_mxfp8_quant(
                            xs[i], rs[i], w, 1e-5, True, align
                        )
                    )
                ),
                E * 2 * 3 + mx_out,
            )
            us_ln_mx = rec(
                "ln->mxfp8",
                "ours",
                t(
                    lambda i: (
                        lambda: flashinfer.layernorm_mxfp8_quant(
                            xs[i], g, b, 1e-5, True, align
                        )
                    )
                ),
                E * 2 + mx_out,
            )
            # unfused upstream: fused_add_rmsnorm (in place) + F.pad + quantizer (ideal)
            us_norm = t(
                lambda i: lambda: flashinfer.fused_add_rmsnorm(xs[i], rs[i], w, 1e-5)
            )
            us_pad = t(lambda i: lambda: F.pad(xs[i], (0, Hp - H))) if Hp != H else 0.0
            q_bytes = T * Hp * 2 + mx_out
            us_q_ideal = q_bytes / copy_bw / 1e3
            pad_bytes = T * Hp * 4 if Hp != H else 0
            add_rms_pair = {"fused_add_rmsnorm": us_norm, "F.pad": us_pad, "ideal_quant": us_q_ideal}
            # the same unfused sequence replaces add+RMSNorm -> MXFP8 with and without the normed output
            for op, us_ours in (("add+rms->mxfp8+normed", us_f), ("add+rms->mxfp8", us_add)):
                pair(op, "upstream fused_add_rmsnorm+pad+ideal_quant", add_rms_pair,
                     E * 2 * 4 + pad_bytes + q_bytes, us_ours)
            us_rms_up = t(
                lambda i: lambda: flashinfer.rmsnorm(xs[i], w, 1e-5, out=nos[i])
            )
            # rmsnorm writes the bf16 normed row, so the same sequence replaces RMSNorm -> MXFP8 + normed
            rms_pair = {"rmsnorm": us_rms_up, "F.pad": us_pad, "ideal_quant": us_q_ideal}
            for op, us_ours in (("rms->mxfp8", us_rms), ("rms->mxfp8+normed", us_rms_n)):
                pair(op, "upstream rmsnorm+pad+ideal_quant", rms_pair, E * 4 + pad_bytes + q_bytes, us_ours)
            us_gemma_up = t(
                lambda i: lambda: flashinfer.gemma_fused_add_rmsnorm(xs[i], rs[i], w, 1e-5)
            )
            pair(
                "gemma_add+rms->mxfp8",
                "upstream gemma_fused_add_rmsnorm+pad+ideal_quant",
                {"gemma_fused_add_rmsnorm": us_gemma_up, "F.pad": us_pad, "ideal_quant": us_q_ideal},
                E * 2 * 4 + pad_bytes + q_bytes,
                us_gemma_mx,
            )
            us_ln_bf16 = t(lambda i: lambda: flashinfer.layernorm(xs[i], g, b, 1e-5))
            pair(
                "ln->mxfp8",
                "upstream layernorm+pad+ideal_quant",
                {"layernorm": us_ln_bf16, "F.pad": us_pad, "ideal_quant": us_q_ideal},
                E * 4 + pad_bytes + q_bytes,
                us_ln_mx,
            )
            # ---------------- static FP8 ----------------
            us_ln = rec(
                "ln->fp8",
                "ours (norm_quant module layernorm_quant)",
                t(
                    lambda i: (
                        lambda: get_norm_quant_module().layernorm_quant(
                            o8s[i], xs[i], g, b, scale, 1e-5
                        )
                    )
                ),
                E * 3,
            )
            us_ln_up = rec(
                "ln->fp8",
                "upstream layernorm_quant",  # the default backend, recorded in env
                t(
                    lambda i: (
                        lambda: flashinfer.layernorm_quant(
                            o8s[i], xs[i], g, b, scale, 1e-5
                        )
                    )
                ),
                E * 3,
            )
            rows[-1]["speedup_ours"] = round(us_ln_up / us_ln, 3)
            us_add_ln = rec(
                "add+ln->fp8",
                "ours (fused_add_layernorm_quant)",
                t(
                    lambda i: (
                        lambda: flashinfer.fused_add_layernorm_quant(
                            o8s[i], xs[i], rs[i], g, b, scale, 1e-5
                        )
                    )
                ),
                E * 7,
            )
            us_torch_add = t(lambda i: lambda: rs[i].add_(xs[i]))
            pair(
                "add+ln->fp8",
                "torch add_ + upstream layernorm_quant",
                {"residual.add_(input)": us_torch_add, "layernorm_quant": us_ln_up},
                E * 6 + E * 3,
                us_add_ln,
            )
            us_r = rec(
                "rms->fp8",
                "ours",
                t(
                    lambda i: (
                        lambda: _norm_fp8_quantize(
                            o8s[i],
                            None,
                            xs[i],
                            None,
                            w,
                            None,
                            scale,
                            _RMSNORM,
                            0.0,
                            1e-5,
                            True,
                        )
                    )
                ),
                E * 3,
            )
            us_r_up = rec(
                "rms->fp8",
                "upstream rmsnorm_quant",
                t(
                    lambda i: (
                        lambda: flashinfer.rmsnorm_quant(o8s[i], xs[i], w, scale, 1e-5)
                    )
                ),
                E * 3,
            )
            rows[-1]["speedup_ours"] = round(us_r_up / us_r, 3)
            us_ar = rec(
                "add+rms->fp8",
                "ours",
                t(
                    lambda i: (
                        lambda: _norm_fp8_quantize(
                            o8s[i],
                            None,
                            xs[i],
                            rs[i],
                            w,
                            None,
                            scale,
                            _RMSNORM,
                            0.0,
                            1e-5,
                            True,
                        )
                    )
                ),
                E * 7,
            )
            us_ar_up = rec(
                "add+rms->fp8",
                "upstream fused_add_rmsnorm_quant",
                t(
                    lambda i: (
                        lambda: flashinfer.fused_add_rmsnorm_quant(
                            o8s[i], xs[i], rs[i], w, scale, 1e-5
                        )
                    )
                ),
                E * 7,
            )
            rows[-1]["speedup_ours"] = round(us_ar_up / us_ar, 3)
            us_gemma_fp8 = rec(
                "gemma_add+rms->fp8",
                "ours (gemma_fused_add_rmsnorm_quant)",
                t(
                    lambda i: (
                        lambda: flashinfer.gemma_fused_add_rmsnorm_quant(
                            o8s[i], xs[i], rs[i], w, scale, 1e-5
                        )
                    )
                ),
                E * 7,
            )
            # static quantizer of a bf16 tensor (read 2, write 1 byte per element) at the copy ceiling
            us_static_q_ideal = E * 3 / copy_bw / 1e3
            pair(
                "gemma_add+rms->fp8",
                "upstream gemma_fused_add_rmsnorm+ideal_quant",
                {"gemma_fused_add_rmsnorm": us_gemma_up, "ideal_quant": us_static_q_ideal},
                E * 2 * 4 + E * 3,
                us_gemma_fp8,
            )
            # ---------------- dynamic per-token ----------------
            us_pt = rec(
                "rms->fp8 per-token",
                "ours",
                t(
                    lambda i: (
                        lambda: flashinfer.norm_fp8_per_token_quant(xs[i], w, 1e-5)
                    )
                ),
                E * 3 + 4 * T,
            )
            pair(
                "rms->fp8 per-token",
                "upstream rmsnorm+ideal_quant",
                {"rmsnorm": us_rms_up, "ideal_quant": (E * 3 + 4 * T) / copy_bw / 1e3},
                E * 4 + E * 3 + 4 * T,
                us_pt,
            )
            # reference: a plain copy of the bytes a no-residual norm -> FP8 moves (2 + 1 per
            # element), i.e. the copy ceiling at this size (launch and tail included)
            src = [torch.empty(E * 3 // 2, device=dev, dtype=torch.uint8) for _ in range(n_sets)]
            dst = [torch.empty_like(x) for x in src]
            rec("copy (3 B/elt)", "torch copy_", t(lambda i: lambda: dst[i].copy_(src[i])), E * 3)
            src = dst = None
            # reference: upstream rmsnorm (bf16 out)
            rec("rms->bf16", "upstream rmsnorm", us_rms_up, E * 4)
            if args.eager and T <= 16:
                rec(
                    "rms->mxfp8 (eager)",
                    "ours",
                    eager_time_us(
                        lambda: flashinfer.rmsnorm_mxfp8_quant(
                            xs[0], w, 1e-5, True, align
                        )
                    ),
                    E * 2 + mx_out,
                )
                rec(
                    "rms->bf16 (eager)",
                    "upstream rmsnorm",
                    eager_time_us(
                        lambda: flashinfer.rmsnorm(xs[0], w, 1e-5, out=nos[0])
                    ),
                    E * 4,
                )
            xs = rs = nos = o8s = None  # free the buffers before the next shape
            torch.cuda.empty_cache()

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_norm_quant_fused.json"), "w") as f:
        json.dump({"env": env, "rows": rows}, f, indent=1)
    lines = [
        f"# fused norm -> FP8/MXFP8 on {env['device']} (driver {env['driver']}, torch {env['torch']})",
        "",
        f"copy ceiling {copy_bw:.0f} GB/s (1 GiB D2D, read+write); upstream norm backend: "
        f"{env['upstream_norm_backend']}; upstream commit {UPSTREAM_COMMIT}; {env['method']}",
        f"series: {json.dumps(env.get('series', 'not recorded'))}",
        "",
        "| H | T | op | impl | us | GB/s | % copy | speedup of ours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['H']} | {r['T']} | {r['op']} | {r['impl']} | {r['us']} | {r.get('GBps', '')} | "
            f"{r.get('pct_copy', '')} | {r.get('speedup_ours', '')} |"
        )
    with open(os.path.join(args.out, "bench_norm_quant_fused.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
