"""Every GPU path of mmalign in one run, each step timed with its peak memory.

    python benchmarks/gpu_check.py                  # one GPU, < 8 min: writes benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --cpu --tiny     # the same steps on the CPU with tiny sizes (< 1 min; a test)

Steps (a step whose library is missing is reported as skipped, with the reason; a failing step
is reported with its error and the others still run):

  attention/<impl>   bf16 DPO and RRPO steps (policy + frozen reference, shared-prompt forward) on
                     a randomly initialised Qwen2.5-VL of 7B shape but 2 layers (tiny: the test
                     preset's shape), for sdpa, flex_attention (where torch has it) and
                     flash_attention_2 (where flash_attn imports)
  long_video         64 frames at 644 x 644 (about 17k video tokens) with gradient checkpointing
                     and chunked log-probs: one DPO step
  shared_prompt      shared-prompt vs two-pass DPO step time, same batch, the speed-up
  fsdp2              torch's fully_shard at world size 1: a step, the full state dict gathered,
                     final/ written by mmalign's save_final, then from_pretrained of final/ and its
                     logits compared with the trained model's
  deepspeed_zero3    accelerate + DeepSpeed ZeRO-3 (where deepspeed imports): one DPO step
  grpo               rollouts (vision once per prompt) + one clipped-ratio update

Frames come from the synthetic world's renderer, so nothing is decoded: the GPU machine has no
decord. Only torch, transformers, accelerate and peft are needed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

SEVEN_B = dict(hidden=3584, heads=28, kv_heads=4, intermediate=18944, layers=2, vocab=152064,
               vision_hidden=1280, vision_heads=16, vision_intermediate=3420, vision_depth=2)
TINY = dict(hidden=64, heads=4, kv_heads=2, intermediate=128, layers=2, vocab=None,
            vision_hidden=32, vision_heads=2, vision_intermediate=64, vision_depth=2)


# ---------------------------------------------------------------- model and data

def build(shape: dict, attn: str, dtype, device, max_pixels: int):
    """A random Qwen2.5-VL of `shape` with the tiny preset's tokenizer and chat template and a
    processor whose per-frame budget is `max_pixels`."""
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    from mmalign.models.tiny import QWEN_CHAT_TEMPLATE, _qwen_tokenizer

    torch.manual_seed(0)
    tok = _qwen_tokenizer()
    ids = tok.convert_tokens_to_ids
    budget = dict(min_pixels=28 * 28 * 4, max_pixels=max_pixels)
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**budget),
                                    video_processor=Qwen2VLVideoProcessor(**budget, cap_pixels_per_frame=False),
                                    tokenizer=tok, chat_template=QWEN_CHAT_TEMPLATE)
    head_dim = shape["hidden"] // shape["heads"]
    half = head_dim // 2
    section = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    text = dict(vocab_size=shape["vocab"] or len(tok), hidden_size=shape["hidden"],
                intermediate_size=shape["intermediate"], num_hidden_layers=shape["layers"],
                num_attention_heads=shape["heads"], num_key_value_heads=shape["kv_heads"],
                max_position_embeddings=32768, eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"),
                bos_token_id=None, rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": section})
    vision = dict(depth=shape["vision_depth"], num_heads=shape["vision_heads"], hidden_size=shape["vision_hidden"],
                  intermediate_size=shape["vision_intermediate"], out_hidden_size=shape["hidden"], patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1])
    special = dict(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                   vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **special)
    from mmalign.models import hf

    hf.set_attn_implementation(config, attn)
    model = Qwen2_5_VLForConditionalGeneration(config).to(device=device, dtype=dtype)
    for sub in (model.config, model.model.language_model.config, model.model.visual.config):
        hf.set_attn_implementation(sub, attn)
    return model, processor


def clip(n_frames: int, size: int, seed: int = 0):
    from mmalign.data.video import Video
    from mmalign.world import render, sample_scene

    scene = sample_scene(seed, n_frames=n_frames, width=size, height=size, sizes=(size // 3, size // 2))
    frames = render(scene)
    return Video(frames, [i / scene.fps for i in range(n_frames)], float(scene.fps), f"world-{seed}",
                 list(range(n_frames)))


def pair_batch(processor, n_pairs: int, n_frames: int, size: int, shared: bool, device):
    from mmalign.data.collate import Sequence, collate_sequences, encode_response, span_weights
    from mmalign.models.backbone import encode_prompt

    seqs_c, seqs_r = [], []
    for k in range(n_pairs):
        prompt = encode_prompt(processor, "Describe what happens in the video.", video=clip(n_frames, size, k))
        chosen = encode_response(processor.tokenizer, "A red circle moves left. Then a blue square appears.",
                                 "<|im_end|>")
        rejected = encode_response(processor.tokenizer, "A red circle moves right. Then a blue square appears.",
                                   "<|im_end|>")
        seqs_c.append(Sequence(prompt, chosen.ids, {"token": span_weights(chosen, [(19, 23)])}))
        seqs_r.append(Sequence(prompt, rejected.ids, {"token": span_weights(rejected, [(19, 24)])}))
    batch = collate_sequences(seqs_c + seqs_r, processor.tokenizer.pad_token_id, shared_prompt=shared)
    return {k: v.to(device) for k, v in batch.items()}


def preference_step(method: str, model, reference, batch: dict, optimizer, chunk: int, scorer=None) -> dict:
    from mmalign.config import LossConfig
    from mmalign.methods import compute_loss, method as method_record
    from mmalign.train.scoring import TokenScorer

    n = batch["labels"].shape[0] // 2
    scorer, ref_scorer = scorer or TokenScorer(model, chunk), TokenScorer(reference, chunk)
    want_kl = method_record(method).token_kl
    with torch.no_grad():
        ref = ref_scorer(batch, return_hidden=want_kl)
    if want_kl:
        from mmalign.train.scoring import lm_head

        policy = scorer(batch, ref_hidden=ref["hidden"], ref_head=lm_head(reference), kl_rows=n)
    else:
        policy = scorer(batch)
    out = compute_loss(method, LossConfig(), batch, 2, policy, ref)
    out.loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": float(out.loss.detach()), "tokens": int(batch["labels"].numel())}


# ---------------------------------------------------------------- measuring

class Steps:
    def __init__(self, device):
        self.device, self.rows = device, {}

    def run(self, name: str, fn):
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.time()
        try:
            result = fn() or {}
            status = result.pop("status", "ok")
        except SkipStep as e:
            status, result = "skipped", {"reason": str(e)}
        except Exception as e:  # noqa: BLE001 - a failing step is reported, the others still run
            status, result = "failed", {"error": f"{type(e).__name__}: {e}",
                                        "traceback": traceback.format_exc(limit=6)[-1500:]}
        if cuda:
            torch.cuda.synchronize()
        row = {"status": status, "seconds": round(time.time() - t0, 3), **result}
        if cuda:
            row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        self.rows[name] = row
        print(f"{name:<28} {status:<8} {row['seconds']:>8.2f}s " + json.dumps(
            {k: v for k, v in row.items() if k not in ("status", "seconds", "traceback")})[:200], flush=True)
        return row


class SkipStep(Exception):
    pass


def need(module: str) -> None:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as e:
        raise SkipStep(f"{module} is not installed ({e})") from None


# ---------------------------------------------------------------- the steps

def attention_step(shape, attn, dtype, device, size):
    if attn == "flash_attention_2":
        need("flash_attn")
    if attn == "flex_attention":
        need("torch.nn.attention.flex_attention")
    from mmalign.train.reference import frozen_copy

    try:
        model, processor = build(shape, attn, dtype, device, max_pixels=size * size)
    except ValueError as e:
        if "does not support" in str(e):
            raise SkipStep(f"transformers: {str(e).split('.')[0]}") from None
        raise
    model.model.visual.requires_grad_(False)
    reference = frozen_copy(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batch = pair_batch(processor, 2, 8, size, shared=True, device=device)
    out = {m: preference_step(m, model, reference, batch, optimizer, 512) for m in ("dpo", "rrpo")}
    finite = all(np.isfinite(v["loss"]) for v in out.values())
    return {"status": "ok" if finite else "failed", **{f"{m}_loss": v["loss"] for m, v in out.items()}}


def long_video_step(shape, dtype, device, frames, size):
    from mmalign.train.reference import frozen_copy

    model, processor = build(shape, "sdpa", dtype, device, max_pixels=size * size)
    model.model.visual.requires_grad_(False)
    reference = frozen_copy(model)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batch = pair_batch(processor, 1, frames, size, shared=True, device=device)
    video_tokens = int((batch["packed.input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")).sum())
    out = preference_step("dpo", model, reference, batch, optimizer, 256)
    return {"frames": frames, "video_tokens": video_tokens, "row_tokens": int(batch["packed.input_ids"].shape[1]),
            "loss": out["loss"]}


def shared_prompt_step(shape, dtype, device, size, repeats):
    from mmalign.train.reference import frozen_copy

    model, processor = build(shape, "sdpa", dtype, device, max_pixels=size * size)
    model.model.visual.requires_grad_(False)
    reference = frozen_copy(model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)  # time, not learning
    times = {}
    for shared in (False, True, False, True):
        batch = pair_batch(processor, 2, 16, size, shared=shared, device=device)
        preference_step("dpo", model, reference, batch, optimizer, 512)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.time()
        for _ in range(repeats):
            preference_step("dpo", model, reference, batch, optimizer, 512)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times[shared] = min(times.get(shared, 1e9), (time.time() - t0) / repeats)
    return {"two_pass_seconds": round(times[False], 4), "shared_seconds": round(times[True], 4),
            "speedup": round(times[False] / times[True], 3)}


def fsdp2_step(shape, dtype, device, size, out: Path):
    import torch.distributed as dist
    from transformers import AutoModelForImageTextToText

    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError:
        from torch.distributed._composable.fsdp import fully_shard
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from mmalign.train.checkpoint import save_final
    from mmalign.train.reference import frozen_copy

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29533")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    model, processor = build(shape, "sdpa", torch.float32 if device.type == "cpu" else dtype, device,
                             max_pixels=size * size)
    model.model.visual.requires_grad_(False)
    reference = frozen_copy(model)
    from mmalign.train.scoring import TokenScorer

    # As accelerate's FSDP plugin does in training: each decoder layer a unit, the scorer (which
    # calls the backbone and the LM head) the root, so its forward gathers the rest.
    scorer = TokenScorer(model, 512)
    for layer in model.model.language_model.layers:
        fully_shard(layer)
    fully_shard(scorer)
    optimizer = torch.optim.AdamW([p for p in scorer.parameters() if p.requires_grad], lr=1e-3)
    batch = pair_batch(processor, 2, 8, size, shared=False, device=device)
    loss = preference_step("dpo", model, reference, batch, optimizer, 512, scorer=scorer)["loss"]
    state = get_model_state_dict(scorer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    state = {k.removeprefix("model."): v for k, v in state.items()}
    final = save_final(out / "fsdp2_final", model, processor, state)
    reloaded = AutoModelForImageTextToText.from_pretrained(final, dtype=next(iter(state.values())).dtype).to(device)
    with torch.no_grad():
        a = scorer(batch)["logps"].float()
        b = TokenScorer(reloaded, 512)(batch)["logps"].float()
    mask = batch["labels"][:, 1:] != -100
    return {"loss": loss, "reloaded_max_abs_logp_diff": float((a - b)[mask].abs().max()),
            "status": "ok" if torch.allclose(a[mask], b[mask], atol=1e-2, rtol=1e-2) else "failed"}


def deepspeed_step(shape, dtype, device, size):
    need("deepspeed")
    if device.type != "cuda":
        raise SkipStep("DeepSpeed ZeRO-3 needs a GPU")
    from accelerate import Accelerator
    from accelerate.utils import DeepSpeedPlugin

    from mmalign.train.reference import frozen_copy

    model, processor = build(shape, "sdpa", dtype, device, max_pixels=size * size)
    model.model.visual.requires_grad_(False)
    reference = frozen_copy(model)
    accelerator = Accelerator(mixed_precision="bf16", deepspeed_plugin=DeepSpeedPlugin(zero_stage=3))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model, optimizer = accelerator.prepare(model, optimizer)
    batch = pair_batch(processor, 2, 8, size, shared=False, device=accelerator.device)
    return {"loss": preference_step("dpo", accelerator.unwrap_model(model), reference, batch, optimizer, 512)["loss"]}


def grpo_step(shape, dtype, device, size):
    from mmalign.config import GrpoConfig
    from mmalign.data.collate import Sequence
    from mmalign.losses import group_advantages
    from mmalign.models.backbone import encode_prompt
    from mmalign.train.grpo import encode_visual, fixed_logps, micro_batches, rollout, scoring_batch, update
    from mmalign.train.scoring import TokenScorer

    class Single:  # stands in for accelerate with one process
        num_processes, device_ = 1, device

        def no_sync(self, _):
            import contextlib

            return contextlib.nullcontext()

        def autocast(self):
            import contextlib

            return contextlib.nullcontext()

        def backward(self, loss):
            loss.backward()

        def clip_grad_norm_(self, params, norm):
            return torch.nn.utils.clip_grad_norm_(params, norm)

    model, processor = build(shape, "sdpa", dtype, device, max_pixels=size * size)
    model.model.visual.requires_grad_(False)
    g = GrpoConfig(num_generations=4, max_new_tokens=16, kl_beta=0.0)
    prompts = [encode_prompt(processor, "How many objects are in the video?", video=clip(8, size, k)) for k in range(2)]
    model.eval()
    feats = [encode_visual(model, p, device) for p in prompts]
    eos = [processor.tokenizer.convert_tokens_to_ids("<|im_end|>")]
    pad = processor.tokenizer.pad_token_id
    t0 = time.time()
    ids, _ = rollout(model, prompts, feats, g, g.num_generations, pad, eos, device)
    rollout_seconds = time.time() - t0
    model.train()
    rewards = torch.tensor([float(len(x) % 2) for x in ids])
    rewards[0] += 0.5  # never a flat batch
    adv = group_advantages(rewards, g.num_generations)
    seqs = [Sequence(prompts[i // g.num_generations], ids[i]) for i in range(len(ids))]
    rows = list(range(len(ids)))
    chunks = micro_batches(rows, None)
    batches = [scoring_batch(seqs, c, pad, True, device) for c in chunks]
    scorer = TokenScorer(model, 512)
    fixed = fixed_logps(scorer, None, batches, False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    tokens = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
    totals = {"tokens": tokens, "rows": len(rows), "scale": 1.0, "dapo_normalizer": float(tokens)}
    loss, norm, _ = update(scorer, optimizer, scheduler, params, batches, chunks, fixed, adv.to(device), totals, g,
                           1.0, Single())
    return {"completions": len(ids), "rollout_seconds": round(rollout_seconds, 3), "loss": loss, "grad_norm": norm}


# ---------------------------------------------------------------- main

def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (with --tiny: the test of this script)")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (the test preset's shape)")
    ap.add_argument("--out", default=None, help="result JSON (default benchmarks/results/gpu_check.json; "
                                                "--tiny: runs/gpu_check_tiny.json)")
    args = ap.parse_args(argv)
    device = torch.device("cpu" if args.cpu or not torch.cuda.is_available() else "cuda")
    shape = TINY if args.tiny else SEVEN_B
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    size, long_frames, long_size = (56, 8, 112) if args.tiny else (448, 64, 644)
    out = Path(args.out or (ROOT / ("runs/gpu_check_tiny.json" if args.tiny else "benchmarks/results/gpu_check.json")))
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / (out.stem + "_work")
    steps = Steps(device)
    t0 = time.time()
    for attn in ("sdpa", "flex_attention", "flash_attention_2"):
        steps.run(f"attention/{attn}", lambda attn=attn: attention_step(shape, attn, dtype, device, size))
    steps.run("long_video", lambda: long_video_step(shape, dtype, device, long_frames, long_size))
    steps.run("shared_prompt", lambda: shared_prompt_step(shape, dtype, device, size, 2 if args.tiny else 5))
    steps.run("fsdp2", lambda: fsdp2_step(shape, dtype, device, size, work))
    steps.run("deepspeed_zero3", lambda: deepspeed_step(shape, dtype, device, size))
    steps.run("grpo", lambda: grpo_step(shape, dtype, device, size))
    import transformers

    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "shape": "tiny" if args.tiny else "Qwen2.5-VL-7B shape, 2 language and 2 vision layers",
              "torch": torch.__version__, "transformers": transformers.__version__,
              "seconds": round(time.time() - t0, 1), "steps": steps.rows}
    from mmalign.io import write_result_json

    write_result_json(out, result, ROOT)
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return result


if __name__ == "__main__":
    main()
