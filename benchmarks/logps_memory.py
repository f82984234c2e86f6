"""Peak memory of per-token log-probs at a Qwen2.5 vocabulary: full logits vs chunked.

    python benchmarks/logps_memory.py [--tokens 8192] [--vocab 151936] [--chunks 512,256]

Each variant runs in its own subprocess and reports its peak resident memory above what it
held before the computation (inputs allocated and touched): ru_maxrss, so every temporary
counts, whatever allocator path it took. The LM head is frozen (as under LoRA) so that its
weight gradient, the same in every variant, is not counted; the hidden states take gradients.

- full/forward: logits [T, V] in float32, then log_softmax + gather (no grad: the least the
  full path can need; with backward it also keeps the logits' gradient and a softmax);
- chunked/forward and chunked/forward+backward: `mmalign.losses.logps.token_logps`.

Target (issue #6): chunked peak (forward + backward) <= 1/8 of the full float32 logits.
Results to benchmarks/results/logps_memory.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HIDDEN = 64  # the logits dominate; a wider head only slows the matmuls


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(variant: str, tokens: int, vocab: int, chunk: int) -> dict:
    import torch

    from mmalign.losses.logps import logps_from_logits, token_logps

    torch.manual_seed(0)
    hidden = torch.randn(1, tokens, HIDDEN).requires_grad_(variant.endswith("backward"))
    head = torch.nn.Linear(HIDDEN, vocab, bias=False).requires_grad_(False)
    labels = torch.randint(0, vocab, (1, tokens))
    # Warm up on 8 tokens: kernels, and the modules torch.utils.checkpoint imports on first use
    # (~160 MiB of resident code and data, once per process, whatever the sizes).
    with torch.no_grad():
        logps_from_logits(head(hidden[:, :8]), labels[:, :8])
    small = hidden[:, :8].detach().requires_grad_()
    token_logps(small, labels[:, :8], head, chunk_size=4).sum().backward()
    before = peak_mib()
    t0 = time.perf_counter()
    if variant == "full/forward":
        with torch.no_grad():
            lp = logps_from_logits(head(hidden), labels)
    elif variant == "chunked/forward":
        with torch.no_grad():
            lp = token_logps(hidden, labels, head, chunk_size=chunk)
    else:
        lp = token_logps(hidden, labels, head, chunk_size=chunk)
        lp.sum().backward()
    seconds = time.perf_counter() - t0
    assert torch.isfinite(lp).all()
    return {"variant": variant, "chunk_size": chunk if variant.startswith("chunked") else None,
            "peak_extra_mib": round(peak_mib() - before, 1), "seconds": round(seconds, 2)}


from mmalign.io import write_result_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--chunks", default="512,256")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "logps_memory.json"))
    ap.add_argument("--child", nargs=2, metavar=("VARIANT", "CHUNK"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.tokens, args.vocab, int(args.child[1]))))
        return
    logits_mib = args.tokens * args.vocab * 4 / 2**20
    chunks = [int(x) for x in args.chunks.split(",")]
    runs = [("full/forward", 0), ("chunked/forward", chunks[0])] + [("chunked/forward+backward", c) for c in chunks]
    rows = []
    for variant, chunk in runs:
        cmd = [sys.executable, __file__, "--tokens", str(args.tokens), "--vocab", str(args.vocab),
               "--child", variant, str(chunk)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        row["fraction_of_full_logits"] = round(row["peak_extra_mib"] / logits_mib, 4)
        rows.append(row)
    print(f"log-prob memory, {args.tokens} tokens x vocab {args.vocab} (float32 logits = {logits_mib:.0f} MiB):")
    print(f"{'variant':<28}{'chunk':>7}{'peak extra MiB':>16}{'x logits':>10}{'seconds':>9}")
    for r in rows:
        print(f"{r['variant']:<28}{str(r['chunk_size'] or '-'):>7}{r['peak_extra_mib']:>16.0f}"
              f"{r['fraction_of_full_logits']:>10.3f}{r['seconds']:>9.2f}")
    target = [r for r in rows if r["variant"] == "chunked/forward+backward"]
    for r in target:
        print(f"target chunk {r['chunk_size']}: forward+backward peak {r['fraction_of_full_logits']:.3f} x full logits "
              f"(target <= 0.125): {'met' if r['fraction_of_full_logits'] <= 0.125 else 'NOT met'}")
    result = {"benchmark": "logps_memory", "tokens": args.tokens, "vocab": args.vocab, "hidden": HIDDEN,
              "full_float32_logits_mib": round(logits_mib, 1), "rows": rows, "target_fraction": 0.125,
              "machine": {"platform": platform.platform(), "python": platform.python_version()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_result_json(args.out, result, ROOT)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
