"""Seconds per DPO preference step: the naive two-pass forward vs mmalign's shared-prompt path.

    python benchmarks/pair_step.py [--frames 16] [--size 224] [--layers 6] [--vocab 4096] [--steps 4]
    python benchmarks/pair_step.py --family qwen3_vl     # a tiny preset of another family (see below)

One video-heavy pair (a 16-frame 224x224 clip and a short question; prompt >= 90% of each
sequence) on a randomly initialised Qwen2.5-VL (6 layers of width 512, a 4-block vision tower)
small enough for a 2-core CPU. Its LM head has 4096 rows so that, per token, head and
transformer weigh what they do in Qwen2.5-VL-3B/7B (head ~10% of the work); at width 512 the
real 151,936-row head would be 4x the transformer and dwarf what is measured here (it is the
same for both paths: run --vocab 151936 to see it). A step is what the trainer does per
micro-batch with a frozen-copy reference: reference log-probs (no grad), policy log-probs,
the DPO loss, backward. The vision tower is frozen (the default, as in RRPO and TEMPLE).

- naive: `collate_sequences(..., shared_prompt=False)`: two full rows [prompt | chosen] and
  [prompt | rejected]; the vision tower runs for each (4 times per step with the reference).
- shared: `shared_prompt=True`, mmalign's default: one row [prompt | chosen | rejected]; the
  vision tower runs once per model (2 times per step); attention in "split" mode (prompt +
  chosen one causal block, rejected against the prompt's keys and its own).
- shared_mask: the same row through one sdpa call with the prefix-sharing boolean mask, for
  comparison: it computes every masked-out score and skips no causal block.

`--family <tiny preset>` (qwen3_vl, glm4v, internvl, llava_onevision, smolvlm, ...) runs the
same pair on that family's tiny preset (its real config class and processor, width 64, 2
layers, built from config as in the tests) instead of the width-512 Qwen2.5-VL; results go to
pair_step_<family>.json. At that size fixed per-call overheads dominate a 15-30 ms step, so
these rows check that each family's shared path pays off, no more. `--family F --width 512`
widens the family's language model to the default model's size (6 layers of width 512, 64-dim
heads, a 4096-row head; the family's own vision tower and processor kept) and samples as many
frames as give a prompt of about `--prompt-tokens` (the preset processors' frames are small,
4-16 tokens each); results go to pair_step_<family>_w512.json. That is the per-family
counterpart of the default run: the LLM's work dominates the step, as on a 7B.

The token-count limit of the speed-up is 2(P+R)/(P+2R) (the LLM processes P+2R tokens
instead of 2(P+R)); running the vision tower once adds to it. The optimizer step, the same
for all paths, is timed separately and reported beside. Paths alternate, median of --steps
timed steps each after one warm-up round; one torch thread by default (see --threads), wall
and process CPU time both recorded. Results to benchmarks/results/pair_step.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
import types
from pathlib import Path

import numpy as np
import torch

from mmalign.config import LossConfig
from mmalign.data.collate import Sequence, collate_sequences, encode_response
from mmalign.models.backbone import encode_prompt, freeze_vision
from mmalign.methods import compute_loss
from mmalign.train.scoring import TokenScorer

CHOSEN = ("A red circle moves left across the frame while a blue square appears behind it. Then the green "
          "triangle moves up, the yellow circle stays still, and the purple square disappears before the end.")
REJECTED = ("A red circle moves right across the frame while a blue square appears behind it. Then the green "
            "triangle moves down, the yellow circle stays still, and the purple square appears before the end.")


def build(args):
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    from mmalign.models.tiny import QWEN_CHAT_TEMPLATE, _qwen_tokenizer

    tok = _qwen_tokenizer()
    ids = tok.convert_tokens_to_ids
    budget = dict(min_pixels=28 * 28 * 4, max_pixels=args.size * args.size)
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**budget),
                                    video_processor=Qwen2VLVideoProcessor(**budget, cap_pixels_per_frame=False),
                                    tokenizer=tok, chat_template=QWEN_CHAT_TEMPLATE)
    heads = args.hidden // 64
    text = dict(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=3 * args.hidden,
                num_hidden_layers=args.layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 4),
                max_position_embeddings=32768, eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"),
                bos_token_id=None, tie_word_embeddings=True,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [8, 12, 12]})
    vision = dict(depth=4, hidden_size=256, intermediate_size=512, num_heads=4, out_hidden_size=args.hidden,
                  patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                  fullatt_block_indexes=[1, 3])
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids("<|image_pad|>"),
                              video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
                              vision_end_token_id=ids("<|vision_end|>"), tie_word_embeddings=True)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).train()
    return model, processor


def widened(model, width: int, layers: int, vocab: int):
    """The family's model with its language model at `width` x `layers` (random weights)."""
    config = copy.deepcopy(model.config)
    text = config.text_config
    heads = width // 64
    text.hidden_size, text.intermediate_size, text.num_hidden_layers = width, 3 * width, layers
    text.num_attention_heads, text.num_key_value_heads, text.vocab_size = heads, max(1, heads // 4), vocab
    if getattr(text, "head_dim", None):
        text.head_dim = 64
    if getattr(text, "layer_types", None):
        text.layer_types = ["full_attention"] * layers
    rope = getattr(text, "rope_parameters", None) or {}
    if "mrope_section" in rope:  # 3D rotary sections cover the rotated half of a 64-dim head
        rope["mrope_section"] = [8, 12, 12]
    if hasattr(config.vision_config, "out_hidden_size"):  # Qwen / GLM towers project to the LLM width themselves
        config.vision_config.out_hidden_size = width
    torch.manual_seed(0)
    return type(model)(config).train()


def video_prompt(processor, n_frames: int, size: int) -> dict:
    frames = np.random.default_rng(0).integers(0, 255, (n_frames, size, size, 3), dtype=np.uint8)
    video = types.SimpleNamespace(frames=frames, timestamps=[i / 2 for i in range(n_frames)], source_fps=2.0)
    return encode_prompt(processor, "Describe what happens in the video, in order.", video=video)


def frames_for(processor, tokens: int, size: int) -> int:
    """The (even: Qwen's 2-frame patches) frame count whose prompt is about `tokens` long. Two
    rounds: a processor's pixel budget can shrink frames as their number grows."""
    n = 16
    for _ in range(2):
        per_frame = video_prompt(processor, n, size)["input_ids"].shape[1] / n
        n = max(2, 2 * round(tokens / per_frame / 2))
    return n


def pair(processor, args, end: str = "<|im_end|>") -> list[Sequence]:
    prompt = video_prompt(processor, args.frames, args.size)
    resp = [encode_response(processor.tokenizer, t, end).ids for t in (CHOSEN, REJECTED)]
    return [Sequence(prompt, resp[0]), Sequence(prompt, resp[1])]


def step(policy: TokenScorer, reference: TokenScorer, batch: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one preference step."""
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        ref = reference(batch)
    out = compute_loss("dpo", LossConfig(), batch, 2, policy(batch), ref)
    out.loss.backward()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    policy.model.zero_grad(set_to_none=True)
    return seconds, cpu


from mmalign.io import write_result_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = str(Path(__file__).parent / "results" / "pair_step.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=224, help="frame side in pixels (14-px patches, 2x2 merged)")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--vocab", type=int, default=4096,
                    help="LM-head rows; 4096 at width 512 keeps Qwen2.5-VL-3B/7B's ratio of LM-head to transformer "
                         "work per token (~10%%); the real 151936 would make the head 4x the transformer here")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (0 = torch's default); 1 because on a small shared machine two OpenMP "
                         "threads spin on each other: here 2-3x slower than one, and noisy")
    ap.add_argument("--family", default=None, help="a tiny preset (model.tiny) to run instead of the Qwen2.5-VL model")
    ap.add_argument("--width", type=int, default=None,
                    help="with --family: widen its language model to this width (--layers deep, --vocab rows)")
    ap.add_argument("--prompt-tokens", type=int, default=None,
                    help="with --family: sample the frames that give about this many prompt tokens (default with "
                         "--width: 550, the default model's prompt)")
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.family:
        import tempfile

        from mmalign.config import ModelConfig
        from mmalign.models.backbone import family_of, load_backbone

        model, processor = load_backbone(ModelConfig(tiny=args.family, tiny_dir=tempfile.mkdtemp(), dtype="float32"))
        model.train()
        end = family_of(model).end_of_turn
        if args.width:
            model = widened(model, args.width, args.layers, args.vocab)
            args.prompt_tokens = args.prompt_tokens or 550
        if args.prompt_tokens:
            args.frames = frames_for(processor, args.prompt_tokens, args.size)
        if args.out == DEFAULT_OUT:
            suffix = f"_w{args.width}" if args.width else ""
            args.out = str(Path(DEFAULT_OUT).with_name(f"pair_step_{args.family}{suffix}.json"))
    else:
        model, processor = build(args)
        end = "<|im_end|>"
    freeze_vision(model)
    ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    seqs = pair(processor, args, end)
    pad = processor.tokenizer.pad_token_id
    naive, shared = collate_sequences(seqs, pad), collate_sequences(seqs, pad, shared_prompt=True)
    paths = {"naive": (naive, None), "shared": (shared, None), "shared_mask": (shared, "mask")}
    scorers = {k: (TokenScorer(model, packing=m), TokenScorer(ref_model, packing=m)) for k, (_, m) in paths.items()}
    P = seqs[0].prompt["input_ids"].shape[1]
    rc, rr = len(seqs[0].response_ids), len(seqs[1].response_ids)
    limit = (2 * P + rc + rr) / (P + rc + rr)
    r = (rc + rr) / 2
    grid = seqs[0].prompt.get("video_grid_thw")
    video_tokens = f"{int(grid.prod()) // 4} video" if grid is not None else "video"
    print(f"pair: prompt {P} tokens ({video_tokens}), chosen {rc}, "
          f"rejected {rr}; prompt = {P / (P + r):.1%} of a sequence; "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params, {torch.get_num_threads()} threads")

    with torch.no_grad():  # the paths agree before they are timed
        base = scorers["naive"][0](naive)["logps"]
        diff = max((scorers[k][0](b)["logps"] - base).abs().max().item() for k, (b, _) in paths.items())
    load_before = os.getloadavg()[0]
    times = {k: [] for k in paths}
    for i in range(args.steps + 1):
        for name in list(paths) if i % 2 == 0 else list(paths)[::-1]:
            t = step(*scorers[name], paths[name][0])
            if i > 0:  # the first round warms up
                times[name].append(t)
    wall = {k: statistics.median(t for t, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    for p in optimizer.param_groups[0]["params"]:
        p.grad = torch.zeros_like(p)
    optimizer.step()  # allocates the moments
    t0 = time.perf_counter()
    optimizer.step()
    opt_s = time.perf_counter() - t0
    optimizer.zero_grad(set_to_none=True)

    speedup = {k: wall["naive"] / wall[k] for k in paths}
    speedup_cpu = {k: cpu["naive"] / cpu[k] for k in paths}
    speedup_opt = (wall["naive"] + opt_s) / (wall["shared"] + opt_s)
    load = (load_before + os.getloadavg()[0]) / 2
    print(f"{'path':<13}{'wall s':>8}{'cpu s':>8}{'speed-up':>10}   steps (wall/cpu)")
    for k in paths:
        print(f"{k:<13}{wall[k]:>8.2f}{cpu[k]:>8.2f}{speedup[k]:>9.2f}x   "
              f"{', '.join(f'{t:.2f}/{c:.2f}' for t, c in times[k])}")
    print(f"mmalign (shared, split attention): {speedup['shared']:.2f}x wall, {speedup_cpu['shared']:.2f}x CPU time; "
          f"token-count limit 2(P+R)/(P+2R) = {limit:.2f}x, plus the vision tower run 2 instead of 4 times; "
          f"target >= 1.6x: {'met' if speedup['shared'] >= 1.6 else 'NOT met'}")
    print(f"shared step = {speedup['shared'] / limit:.0%} of the token-count limit (issue #18 target >= 88%: "
          f"{'met' if speedup['shared'] >= 0.88 * limit else 'NOT met'})")
    print(f"with the optimizer step ({opt_s:.2f} s, the same for both) included: {speedup_opt:.2f}x")
    print(f"max |logp naive - logp other paths| = {diff:.2e}; load average during the run {load:.1f} on "
          f"{os.cpu_count()} CPUs")
    result = {"benchmark": "pair_step", "args": vars(args), "prompt_tokens": P, "chosen_tokens": rc,
              "rejected_tokens": rr, "prompt_fraction": round(P / (P + r), 4),
              "params_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
              "seconds_per_step": {k: round(v, 3) for k, v in wall.items()},
              "cpu_seconds_per_step": {k: round(v, 3) for k, v in cpu.items()},
              "all_steps_wall_cpu": {k: [[round(t, 3), round(c, 3)] for t, c in v] for k, v in times.items()},
              "speedup": {k: round(v, 3) for k, v in speedup.items()},
              "speedup_cpu_time": {k: round(v, 3) for k, v in speedup_cpu.items()},
              "token_limit": round(limit, 3), "fraction_of_token_limit": round(speedup["shared"] / limit, 3),
              "target_fraction_of_limit": 0.88, "fraction_target_met": speedup["shared"] >= 0.88 * limit,
              "target": 1.6, "target_met": speedup["shared"] >= 1.6,
              "optimizer_step_seconds": round(opt_s, 3), "speedup_with_optimizer": round(speedup_opt, 3),
              "max_abs_logp_diff": diff, "threads": torch.get_num_threads(), "load_average": round(load, 2),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                          "torch": torch.__version__}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_result_json(args.out, result, ROOT)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
