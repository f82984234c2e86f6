"""Does alignment reduce hallucination? The synthetic-world results table, in one command.

    python benchmarks/synthetic_alignment.py            # the full run (CPU, see FULL below)
    python benchmarks/synthetic_alignment.py --quick    # a smoke run of every step (< 1 min)
    python benchmarks/synthetic_alignment.py --max-changed-fraction 0.3 --results benchmarks/results/minimal_edit
                                                        # DPO / RRPO on stricter minimal-edit rewrites
    python benchmarks/synthetic_alignment.py --sft-mislabels --align-steps 40 --align-lrs 1e-05 3e-05 0.0001 0.0003 \
        --no-lr-on-all-seeds --primary accuracy --guard none --held-out-world 0 \
        --methods dpo rrpo dpo_open rrpo_open rpo_open temple apasi mask_dpo sft_chosen sft_chosen_open \
        --results benchmarks/results/exact_truth_sft    # the default until stop 36: exact-truth SFT, 40 steps,
                                                        # the lr on seed 0 by pair accuracy, the benchmark
                                                        # world's own 160 test videos

The default's design is DESIGN below; each of its keys has a flag (--sft-mislabels, --align-steps,
--align-lrs, --[no-]lr-on-all-seeds, --primary, --guard, --held-out-world, --methods), and a run's
command names those it changed. benchmarks/README.md tells which designs were run, in order, and
what each found; its commands were run under the defaults of their day (it says how to rerun them).

Where the truth is exact (the synthetic video world, mmalign.world, here with large objects and at
most 2 per video). Two worlds: the benchmark world (seed 0: held-in train split, held-out test
split) and a pretraining world (seed PRETRAIN_SEED, other scenes) that stands in for the data a
real VLM is pretrained on. Shared by all seeds:

0. vision a stand-in for the pretrained vision encoder: the random vision tower learns which
         objects and motions each of its tokens shows, from the pretraining world's truth boxes
         (`pretrain_vision`). Trained on the benchmark's own held-in videos instead (as this
         harness first did), it memorised them: per-token object precision 0.95 on them, 0.67 on
         other held-in videos.
1. base  the language model (hidden 128, 2 layers) learns to read the frozen tower's tokens on
         the pretraining world's instruction data (`run_base`): a stand-in for a
         pretrained VLM. A yes/no question about a named object ("Is the triangle red?") needs
         the model to compare the question's words with the video; a model this small sits at
         the yes/no prior for thousands of steps before it learns that, and at lr 2e-3 it never
         did. Its held-in validation scores per question kind go into the report
         (`base_validation`), so a base that never learned it cannot pass unnoticed.

Then, for each seed:

2. SFT   the base fine-tuned on the benchmark world's held-in captions + short QA + held-in
         yes/no questions (benchmark format), seeded data order, vision tower frozen. Held-in =
         the world's train split, less the validation videos. These texts are an annotator's
         who writes purple as blue (--sft-mislabels; `mislabelled`): the SFT model then has a
         hallucination its data taught it. Nothing else changes. `--sft-mislabels` alone: the
         exact truth (the first default; its SFT captions were 0.985 precise already).
3. pairs self-alignment pairs from the held-in pair videos with mmalign's own generators, each
         seed's SFT model answering (see PAIRS). DPO and RRPO train on the same RRPO-recipe
         pairs (`rrpo_qa`: questions with known answers asked on a masked + shuffled video, the
         wrong answers kept, the truth rewritten minimally with the wrong concepts).
4. align copies of each seed's SFT model, 120 steps of 8 pairs, with DPO, RRPO, TEMPLE-style,
         APASI-style, Mask-DPO, and a control: continued SFT on the chosen answers of the
         RRPO-recipe pairs (does the preference add anything beyond the answers it prefers?).
         With --methods, an ablation: DPO, RRPO and RPO on those pairs' open descriptions alone
         (the caption pairs; dpo_open ...) and their own control (sft_chosen_open). Each
         method's lr is chosen on every seed's held-in validation videos (--no-lr-on-all-seeds:
         seed 0's) by the target's rule on the per-seed changes in the primary metric
         (`choose_lrs`), passing over an lr that lowers their pair accuracy (--guard).
5. eval  every model on the held-out videos: the test split of a world whose scenes no model
         was trained or chosen on (seed held_out_world, 640 test videos; --held-out-world 0:
         the benchmark world's own 160): the synthetic hallucination benchmark (paired yes/no
         questions) and caption-level object precision, CHAIR_s, recall and objects named.

The primary metric, the one the target is judged on and the lr is chosen by, is caption object
precision (the share of the objects a caption names that are in the video), fixed before the
default's run; an lr that changes the objects named by more than 15% on any seed is passed over
(the target's length rule). The first default used the benchmark's pair accuracy (a pair counts
only when its basic question, answer yes, and its hallucinated twin, answer no, are both right),
and before it hallucination-question accuracy, which DPO and RRPO won on the validation videos by
answering "no" to everything. --primary picks another of the target's metrics (JUDGED).

The RRPO-recipe pairs are balanced before training (`balance_yes_no`): a yes-biased SFT model
gets wrong mostly the questions whose answer is "no", so its raw pairs can hold many more "no
over yes" pairs than "yes over no" ones, and the preference they teach is then "say no".
Equally many of each are kept (the rest of the pairs, short answers and open descriptions, all).
For the write-up of which step fails, `clean_video_check` asks each seed's SFT model the kept
pairs' questions on the clean video: a pair it already answers right there corrects nothing.
After the shared base, the seeds' work runs as jobs (a seed's SFT model and pairs, one method's
validation runs, one held-out model) in one process per CPU core (--workers; `Jobs`), each job
submitted as soon as what it needs is done. Every process runs one torch thread: the models here
train as fast on one core as on two (300 SFT steps: 38.9 s on one thread, 38.1 s on two), and a
job's results do not depend on where it ran.
Writes benchmarks/results/synthetic_alignment.{json,md,png}: per method the mean over seeds, the
seed spread (min..max and sample std), and the per-seed improvement over that seed's own SFT model.
Intermediate runs live under runs/synthetic_alignment_sft-purple-as-blue/ (`work_folder`: each SFT
data, base recipe or pair filter has its own; rerunning reuses finished steps). A command
with another design (any flag that changes what is trained or scored) and no --results writes its
table into its work folder instead: benchmarks/results holds the default command's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # a spawned worker (--workers) imports this module by name

import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

METHODS = ("dpo", "rrpo", "dpo_open", "rrpo_open", "rpo_open", "temple", "apasi", "mask_dpo", "sft_chosen",
           "sft_chosen_open", "sft_chosen_temple")

# The design the default command runs and judges (benchmarks/README.md, "The default since stop 36"),
# fixed before it was scored; each key but held_out_videos has a flag (`design_flags`). SFT data whose
# annotator writes purple as blue: SFT models with a hallucination their data taught them, to undo
# (with exact-truth SFT the captions were already 0.985 precise: nothing to reduce). 120 alignment
# steps (one pass over the ~1,000 RRPO-recipe pairs); each lr chosen on every seed's held-in
# validation videos by caption object precision, passing over an lr that lowers their pair accuracy
# (at 120 steps 3e-4 always did, so the grid stops at 1e-4). Held out: the 640 test videos of world
# seed 10, which no model and no choice has seen; the benchmark world's own 160 were too few for
# gains of ~0.01 (benchmarks/README.md, tests 3 and 4).
DESIGN = dict(sft_mislabels={"purple": "blue"}, align_steps=120, align_lrs=(1e-5, 3e-5, 1e-4),
              lr_on_all_seeds=True, primary="object_precision", guard="accuracy", held_out_world=10,
              held_out_videos=2560, methods=("dpo", "rrpo", "temple", "apasi", "mask_dpo", "sft_chosen"))
# Sizes. FULL with DESIGN took 26.2-27.1 min on 2 CPU cores with --workers, from nothing (the budget is 30; README);
# QUICK is a smoke test.
# The world's objects are large (26-32 px of a 64 px frame) and at most 2 per video: with the default
# 14-20 px objects, a model this small trained from scratch never learned to read the video.
# vision_steps, base_steps, base_lr and base_seed are the ones seen to give a base that reads the video
# (its held-in validation scores are in the report); at base_lr 2e-3 the yes/no questions never left the
# prior. Whether a base learns it depends on its data order: at 6000 steps only base seed 0 of three did,
# and on one machine of two; at 12000 steps seeds 1 and 2 did, seed 1 on both machines seen, and seed 0
# did not (--base-steps, --base-seed). 6000 vision steps (which read motion) need 12000 base steps too.
FULL = dict(n_videos=640, object_sizes=(26, 32), max_objects=2, pretrain_videos=4000, hidden=128, layers=2,
            vision_steps=3000, base_steps=12000, base_lr=5e-4, base_seed=1, sft_steps=1000, sft_lr=2e-4,
            pair_videos=200, val_videos=80, batch_size=8, seeds=(0, 1, 2), temple_magnitudes=[2, 8],
            caption_tokens=48, **DESIGN)
QUICK = dict(n_videos=8, object_sizes=(26, 32), max_objects=2, pretrain_videos=4, hidden=32, layers=1, vision_steps=2,
             base_steps=2, base_lr=5e-4, base_seed=0, sft_steps=2, sft_lr=2e-4, pair_videos=3, val_videos=2,
             batch_size=8, seeds=(0,), temple_magnitudes=[4], caption_tokens=8,
             **{**DESIGN, "align_steps": 1, "align_lrs": (1e-4, 1e-3), "held_out_videos": 32, "methods": METHODS})
PRETRAIN_SEED = 1  # the pretraining world's scenes; the benchmark world is seed 0
RECIPE = ("vision_steps", "base_steps", "base_seed")  # the shared stand-in and base: --vision-steps ...

LABELS = {"sft": "SFT only", "dpo": "DPO", "rrpo": "RRPO", "dpo_open": "DPO, caption pairs only",
          "rrpo_open": "RRPO, caption pairs only", "rpo_open": "RPO (DPO + chosen NLL), caption pairs only",
          "temple": "TEMPLE-style", "apasi": "APASI-style",
          "mask_dpo": "Mask-DPO", "sft_chosen": "SFT on chosen (control)",
          "sft_chosen_open": "SFT on chosen, caption pairs only (control)",
          "sft_chosen_temple": "SFT on TEMPLE's chosen (its control)"}
BENCH_SUFFIX = "\nAnswer the question using 'yes' or 'no'."  # the benchmark's own (VideoHallucer) suffix
PRIMARY = FULL["primary"]  # the benchmark's pair accuracy; see the module docstring for why not halluc_accuracy

MAX_CHANGED_FRACTION = 0.6  # rrpo_qa's default; --max-changed-fraction sets PAIRS' copy for one run
# Which generator makes each method's pairs, and the training method / loss it is trained with.
# `answers: truth` = chosen is the truth caption (the synthetic world has it); the rejected side
# is always the SFT model's own output (rrpo, temple) or an edit of a caption (inject, apasi).
PAIRS = {
    # RRPO's recipe: the SFT model answers questions with known answers (yes/no, short, open) on a
    # masked (25-50% area) + locally shuffled video; its wrong answers are kept; the rejected side
    # is the truth rewritten with the wrong concepts (exact, from the world's facts), differing
    # phrases -> spans. DPO trains on the very same pairs, so RRPO vs DPO compares the losses only.
    "rrpo_qa": {"generator": "rrpo_qa",
                "rrpo": {"mask_area": [0.25, 0.5], "shuffle_window": 4, "max_changed_fraction": MAX_CHANGED_FRACTION},
                "rrpo_qa": {"types": ["yes_no", "short", "open"]}, "balance_yes_no": True},
    # TEMPLE (pixel-level variant): the SFT model captions the clip-dropped / shuffled / reversed
    # video (rejected) vs the truth caption (chosen); difficulty from the strength m.
    "temple": {"generator": "temple", "answers": "truth", "temple": {"source": "pixels", "clips": 8,
                                                                     "kinds": ["drop", "shuffle", "reverse"]}},
    # APASI: chosen = the SFT model's own greedy description; rejected = 20% / 40% of its
    # sentences replaced by "There is a {obj}" + the model's own completion without the video.
    "apasi": {"generator": "apasi", "answers": "model", "vocabulary": "world",
              "apasi": {"replace_rates": [0.2, 0.4]}},
    # Mask-DPO: truth caption vs injected hallucinations (object, attribute, count, direction,
    # order, co-occurrence), with sentence labels from the truth checker.
    "inject": {"generator": "inject", "answers": "truth",
               "inject": {"types": ["object", "attribute", "count", "direction", "order", "cooccurrence"]}},
}
TRAIN = {  # method -> (pairs file, training method, loss, extra data settings)
    "dpo": ("rrpo_qa", "dpo", {"beta": 0.1}, {}),
    "rrpo": ("rrpo_qa", "rrpo", {"beta": 0.1, "alpha": 0.01}, {}),
    # The ablation: the same losses on the RRPO-recipe pairs' open descriptions alone (the truth
    # caption vs its minimal rewrite with the wrong concepts), without the yes/no and short-answer
    # pairs (`open_pairs`): which kind of pair carries the gain, if any?
    "dpo_open": ("rrpo_qa_open", "dpo", {"beta": 0.1}, {}),
    "rrpo_open": ("rrpo_qa_open", "rrpo", {"beta": 0.1, "alpha": 0.01}, {}),
    # The control below (SFT on these pairs' chosen answers) beat both on unseen world 7; RPO is
    # that SFT term plus DPO's (alpha 1, TRL's rpo_alpha and TEMPLE's): does the preference add
    # to it?
    "rpo_open": ("rrpo_qa_open", "rpo", {"beta": 0.1, "alpha": 1.0}, {}),
    # TEMPLE's DPO is ms-swift's default: sigmoid DPO + 1.0 x chosen NLL (= RPO); its curriculum
    # (easy m first) as one stage ordered by difficulty instead of four merged stages.
    "temple": ("temple", "rpo", {"beta": 0.1, "alpha": 1.0}, {"curriculum": "ordered"}),
    "apasi": ("apasi", "dpo", {"beta": 0.1}, {}),
    "mask_dpo": ("inject", "mask_dpo", {"beta": 0.1}, {}),
    # The control: the same RRPO-recipe pairs' chosen answers as SFT records (`chosen_records`).
    "sft_chosen": ("rrpo_qa", "sft", {}, {}),
    # The caption rows' own control: the open-description pairs' chosen answers (the truth
    # captions) as SFT records. DPO / RRPO on those pairs minus this row is what the rejected
    # side and its spans add.
    "sft_chosen_open": ("rrpo_qa_open", "sft", {}, {}),
    # TEMPLE-style's own control: its pairs' chosen answers (the truth caption, once per
    # perturbed copy, as its RPO's SFT term sees them) as SFT records. At 120 steps on the
    # mislabelled-SFT design TEMPLE gained +0.16 precision on world 6: its SFT term or its preference?
    "sft_chosen_temple": ("temple", "sft", {}, {}),
}


# ---------------------------------------------------------------- model

def build_small_qwen(out: Path, hidden: int, layers: int, seed: int) -> Path:
    """A small random Qwen2.5-VL (built as mmalign.models.tiny._build_qwen builds the tiny preset,
    with a wider / deeper language model and vision tower), saved with save_pretrained."""
    import torch
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    from mmalign.models.tiny import QWEN_CHAT_TEMPLATE, _qwen_tokenizer

    stamp = out / "built.json"
    wanted = {"hidden": hidden, "layers": layers, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return out
    torch.manual_seed(seed)
    tok = _qwen_tokenizer()
    ids = tok.convert_tokens_to_ids
    budget = dict(min_pixels=28 * 28 * 4, max_pixels=56 * 56 * 2)
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**budget),
                                    video_processor=Qwen2VLVideoProcessor(**budget, cap_pixels_per_frame=False),
                                    tokenizer=tok, chat_template=QWEN_CHAT_TEMPLATE)
    heads = 4
    half = hidden // heads // 2  # mrope sections split the rotary half of a head
    section = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    text = dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=2, max_position_embeddings=4096,
                eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"), bos_token_id=None,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section})
    vision = dict(depth=2, num_heads=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                  hidden_size=64, intermediate_size=128, out_hidden_size=hidden, window_size=56,
                  fullatt_block_indexes=[1])
    special = dict(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                   vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=text, vision_config=vision, **special))
    model.save_pretrained(out)
    processor.save_pretrained(out)
    stamp.write_text(json.dumps(wanted))
    return out


def token_labels(truth: dict, indices: list[int], grid_t: int, grid_hw: tuple[int, int], frame_size: int) -> np.ndarray:
    """[grid_t * gh * gw, 18 + 5] multi-hot targets for the vision tower's merged tokens, in the
    tokens' order (time, row, column): which (colour, shape) objects and which motions cover
    each token's cell (two sampled frames x one cell of the gh x gw grid), from the truth boxes."""
    from mmalign.world.scene import COLORS, DIRECTIONS, SHAPES

    combos = [f"{c} {s}" for c in COLORS for s in SHAPES]
    objects = {str(o["id"]): o for o in truth["scene"]["objects"]}
    gh, gw = grid_hw
    cell_h, cell_w = frame_size / gh, frame_size / gw
    out = np.zeros((grid_t, gh, gw, len(combos) + len(DIRECTIONS)), np.float32)
    for t in range(grid_t):
        for frame in indices[2 * t: 2 * t + 2]:  # temporal_patch_size 2: a token spans two frames
            for oid, (x0, y0, x1, y1) in truth["boxes"][frame].items():
                o = objects[oid]
                for r in range(gh):
                    for c in range(gw):
                        w = min(x1, (c + 1) * cell_w) - max(x0, c * cell_w)
                        h = min(y1, (r + 1) * cell_h) - max(y0, r * cell_h)
                        if w > 2 and h > 2 and w * h >= 16:
                            out[t, r, c, combos.index(f"{o['color']} {o['shape']}")] = 1
                            out[t, r, c, len(combos) + DIRECTIONS.index(o["direction"])] = 1
    return out.reshape(-1, out.shape[-1])


def video_tokens(truth: dict, world: Path, model, processor):
    """One video of `world` as the vision tower reads it: (pixel values, its grid_thw, the
    `token_labels` of each merged token), for the stand-in's training and its scoring alike."""
    import torch

    from mmalign.data.video import load_video

    video = load_video(str(world / "videos" / f"{truth['id']}.mp4"), num_frames=8)
    enc = processor.video_processor(videos=[video.frames], return_tensors="pt")
    grid, merge = enc["video_grid_thw"][0], model.config.vision_config.spatial_merge_size
    labels = token_labels(truth, video.indices, int(grid[0]), (int(grid[1]) // merge, int(grid[2]) // merge),
                          video.frames.shape[1])
    return enc["pixel_values_videos"], grid, torch.from_numpy(labels)


def pretrain_vision(model_path: Path, out: Path, world: Path, steps: int, seed: int = 0, lr: float = 2e-3,
                    batch: int = 16, ids: list[str] | None = None) -> Path:
    """Stand-in for the pretrained vision encoder every real VLM starts from (we cannot download
    one): the random vision tower + merger learn, through a linear head, which objects and
    motions each merged token shows (multi-label, truth boxes of every video of `world`, the
    pretraining world: never the benchmark world's videos; `ids` limits it to those videos).
    SFT then trains the language model on top with the tower frozen; the head is kept beside
    the checkpoint (vision_head.safetensors, rows as `token_labels`) only to measure the tower."""
    import torch

    from mmalign.config import ModelConfig
    from mmalign.models.backbone import load_backbone

    truths = [json.loads(t.read_text()) for t in sorted((world / "truth").glob("*.json"))]
    keep = None if ids is None else set(ids)
    truths = [t for t in truths if keep is None or t["id"] in keep]
    stamp, wanted = out / "built.json", {"steps": steps, "seed": seed, "lr": lr, "batch": batch, "videos": len(truths)}
    if stamp.exists() and all(json.loads(stamp.read_text()).get(k) == v for k, v in wanted.items()):
        return out
    torch.manual_seed(seed)
    model, processor = load_backbone(ModelConfig(path=str(model_path)))
    pixels, labels = [], []
    for truth in truths:
        video_pixels, grid, video_labels = video_tokens(truth, world, model, processor)
        pixels.append(video_pixels)
        labels.append(video_labels)
    visual = model.model.visual
    head = torch.nn.Linear(model.config.text_config.hidden_size, labels[0].shape[-1])
    optimizer = torch.optim.AdamW(list(visual.parameters()) + list(head.parameters()), lr=lr)
    rng = np.random.default_rng(seed)
    batch = min(batch, len(pixels))
    for _ in tqdm(range(steps), desc="vision pretraining", leave=False):
        pick = rng.choice(len(pixels), batch, replace=False)
        feats = visual(torch.cat([pixels[i] for i in pick]), grid_thw=grid.repeat(batch, 1)).pooler_output
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(feats), torch.cat([labels[i] for i in pick]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    from safetensors.torch import save_file

    model.save_pretrained(out)
    processor.save_pretrained(out)
    save_file({"weight": head.weight.detach().contiguous(), "bias": head.bias.detach().contiguous()},
              str(out / "vision_head.safetensors"))
    stamp.write_text(json.dumps({**wanted, "final_loss": loss.item()}))
    return out


def vision_token_scores(vision: Path, world: Path, ids: list[str]) -> dict:
    """How well a pretrained vision stand-in reads the videos `ids`: per merged token, its head's
    predictions (logit > 0) against `token_labels`, pooled into precision and recall, for the
    (colour, shape) objects and, separately, for the motions (left, right, up, down, static)."""
    import torch
    from safetensors.torch import load_file

    from mmalign.config import ModelConfig
    from mmalign.models.backbone import load_backbone
    from mmalign.world.scene import COLORS, SHAPES

    model, processor = load_backbone(ModelConfig(path=str(vision)))
    head = load_file(str(vision / "vision_head.safetensors"))
    combos = len(COLORS) * len(SHAPES)
    hits = predicted = present = 0  # per head column, summed over the tokens of every video
    with torch.no_grad():
        for vid in ids:
            truth = json.loads((world / "truth" / f"{vid}.json").read_text())
            pixels, grid, labels = video_tokens(truth, world, model, processor)
            feats = model.model.visual(pixels, grid_thw=grid[None]).pooler_output
            guess, truth_on = feats @ head["weight"].T + head["bias"] > 0, labels > 0
            hits = hits + (guess & truth_on).sum(0)
            predicted = predicted + guess.sum(0)
            present = present + truth_on.sum(0)
    objects, motions = slice(None, combos), slice(combos, None)
    pooled = lambda n, d, cols: int(n[cols].sum()) / max(1, int(d[cols].sum()))  # noqa: E731
    return {"precision": pooled(hits, predicted, objects), "recall": pooled(hits, present, objects),
            "motion_precision": pooled(hits, predicted, motions), "motion_recall": pooled(hits, present, motions)}


def instruction_mix(world: Path, splits: tuple[str, ...], exclude: set[str], name: str,
                    mislabels: dict[str, str] | None = None) -> Path:
    """`world`'s SFT records (captions + short QA) of `splits`, then its benchmark questions of
    those splits in the benchmark's prompt format (so the model knows the yes/no format it is
    tested in), less the videos in `exclude`; written as `world`/<name>.jsonl. The per-seed SFT
    mix is the benchmark world's train split less the validation videos (so choosing an lr on
    them is fair); the base's is every video of the pretraining world. The records are the
    world's own (sft_<split>.jsonl, bench.jsonl), made again from each video's truth so that
    `mislabels` can change it: the texts of an annotator who writes each colour in it as the
    colour it maps to (`mislabelled`)."""
    from mmalign.io import atomic_write_jsonl
    from mmalign.world import Scene, bench_records, sft_records

    out = world / f"{name}.jsonl"
    sft = {split: [] for split in splits}  # the order of the world's files: sft_<split>.jsonl in turn, then bench.jsonl
    bench = []
    for path in sorted((world / "truth").glob("*.json")):
        truth = json.loads(path.read_text())
        if truth["split"] in splits and path.stem not in exclude:
            scene, video = mislabelled(Scene.from_dict(truth["scene"]), mislabels or {}), f"videos/{path.stem}.mp4"
            sft[truth["split"]] += sft_records(scene, path.stem, video, truth["split"])
            bench += bench_records(scene, path.stem, video, truth["split"])
    rows = [row for split in splits for row in sft[split]]
    for b in bench:
        for role in ("basic", "hallucination"):
            rows.append({"id": f"{b['id']}-{role}", "video": b["video"], "prompt": b[role]["question"] + BENCH_SUFFIX,
                         "response": b[role]["answer"], "meta": {"kind": "bench_" + b["type"], "split": b["split"]}})
    atomic_write_jsonl(out, rows)
    return out


def mislabelled(scene, mislabels: dict[str, str]):
    """`scene` as an annotator who writes each colour in `mislabels` as the colour it maps to
    sees it (the pixels are the truth's). A scene where that would give two objects one name is
    left as it is: the annotator tells them apart."""
    from dataclasses import replace

    objects = tuple(replace(o, color=mislabels.get(o.color, o.color)) for o in scene.objects)
    if len({o.name for o in objects}) < len(objects):
        return scene
    return replace(scene, objects=objects)


def chosen_records(pairs: Path) -> Path:
    """The control's training file: each pair's prompt and chosen response as an SFT record
    (same video), written beside the pairs as <name>.chosen.jsonl."""
    from mmalign.io import iter_jsonl

    return _beside(pairs, "chosen", ({"id": r["id"], "video": r["video"], "prompt": r["prompt"], "response": r["chosen"]}
                                     for _, r in iter_jsonl(pairs)))


def open_pairs(pairs: Path) -> Path:
    """The ablation's training file: only the open-description pairs, written beside the pairs
    as <name>.open.jsonl."""
    from mmalign.io import iter_jsonl

    return _beside(pairs, "open", (r for _, r in iter_jsonl(pairs) if r["meta"]["question_type"] == "open"))


def _beside(pairs: Path, suffix: str, rows) -> Path:
    """`rows` (a generator: the pairs are read only when the file is not there yet) written
    beside the pairs as <name>.<suffix>.jsonl."""
    from mmalign.io import atomic_write_jsonl

    out = pairs.with_name(f"{pairs.stem}.{suffix}.jsonl")
    if not out.exists():
        atomic_write_jsonl(out, rows)
    return out


def split_ids(world: Path, split: str) -> list[str]:
    return [t.stem for t in sorted((world / "truth").glob("*.json")) if json.loads(t.read_text())["split"] == split]


def held_in_videos(world: Path, work: Path, ids: list[str]) -> Path:
    """A folder of links to held-in (train-split) videos: pair generators never see held-out ones."""
    folder = work / f"held_in_videos_{len(ids)}"
    folder.mkdir(parents=True, exist_ok=True)
    for vid in ids:
        try:
            (folder / f"{vid}.mp4").symlink_to((world / "videos" / f"{vid}.mp4").resolve())
        except FileExistsError:  # an earlier run made it, or another seed's worker (--workers) just did
            pass
    return folder


# ---------------------------------------------------------------- steps

def train_run(out: Path, model_path: str, method: str, train_file: Path, size: dict, seed: int, *, lr: float,
              max_steps: int, loss: dict | None = None, data: dict | None = None, freeze_vision: bool = True,
              loader_workers: int = 0) -> Path:
    from mmalign.config import build_config
    from mmalign.train.run import train

    final = out / "final"
    if (out / "summary.json").exists() and final.exists():
        return final
    if out.exists():
        shutil.rmtree(out)  # an unfinished earlier attempt
    raw = {"output_dir": str(out), "method": method,
           "model": {"path": model_path, "freeze_vision": freeze_vision},
           "data": {"train_file": str(train_file), "allow_absolute_paths": True, **(data or {})},
           "sampling": {"num_frames": 8},
           "loss": loss or {},
           "train": {"lr": lr, "max_steps": max_steps, "batch_size": size["batch_size"], "seed": seed,
                     "warmup_ratio": 0.05, "reference": "none" if method == "sft" else "copy",
                     "num_workers": loader_workers}}
    train(build_config(raw, f"{method} seed {seed}"))
    return final


def make_pairs(name: str, model_path: str, videos: Path, world: Path, out: Path, size: dict, seed: int) -> Path:
    from mmalign.perturb.config import build_pairs_config
    from mmalign.perturb.run import run_pairs

    target = out / f"{name}.jsonl"
    settings = json.loads(json.dumps(PAIRS[name]))
    balance = settings.pop("balance_yes_no", False)
    if not target.exists():
        raw = {"seed": seed, "model": {"path": model_path}, "truth_dir": str(world / "truth"),
               "sampling": {"num_frames": 8}, "videos_per_batch": 16, **settings,
               # decoded in this process from its cache (_cache_videos); workers would decode them again
               "generation": {"batch_size": 16, "max_new_tokens": size["caption_tokens"], "decode_workers": 0}}
        if name == "temple":
            raw["temple"]["magnitudes"] = size["temple_magnitudes"]
        run_pairs(build_pairs_config(raw, f"pairs {name}"), videos, target, show_progress=True)
    return balance_yes_no(target, seed) if balance else target


def balance_yes_no(path: Path, seed: int) -> Path:
    """Equally many pairs whose truth is "yes" as "no" (a seeded draw from the larger side);
    every other pair kept. Written beside `path` as <name>.balanced.jsonl."""
    out = path.with_name(path.stem + ".balanced.jsonl")
    if out.exists():
        return out
    rows = [json.loads(line) for line in open(path)]
    by_answer = {a: [i for i, r in enumerate(rows) if r["chosen"] == a] for a in ("yes", "no")}
    keep_n = min(len(v) for v in by_answer.values())
    rng = np.random.default_rng(seed)
    drop = set()
    for answer, idx in by_answer.items():
        drop |= set(rng.choice(idx, size=len(idx) - keep_n, replace=False).tolist()) if len(idx) > keep_n else set()
    from mmalign.io import atomic_write_jsonl

    atomic_write_jsonl(out, [r for i, r in enumerate(rows) if i not in drop])
    return out


def validation_bench(world: Path, work: Path, ids: list[str]) -> Path:
    """A benchmark folder holding only the held-in validation videos' yes/no pairs (as its
    "test" split; the videos stay where they are)."""
    from mmalign.io import atomic_write_jsonl, iter_jsonl

    folder = work / f"val_bench_{len(ids)}"
    keep = set(ids)
    rows = [{**b, "split": "test", "video": str((world / b["video"]).resolve())}
            for _, b in iter_jsonl(world / "bench.jsonl") if Path(b["video"]).stem in keep]
    atomic_write_jsonl(folder / "bench.jsonl", rows)
    return folder


def bench_eval(models: dict[str, str], world: Path, out: Path) -> dict[str, dict]:
    """The synthetic hallucination benchmark on `world`'s test split, for each model: its
    metrics, plus `by_kind`, the pair accuracy of each question kind."""
    from mmalign.evals.config import build_eval_config
    from mmalign.evals.run import evaluate

    raw = {"benchmark": "synthetic", "output_dir": str(out), "data": {"root": str(world), "splits": ["test"]},
           "sampling": {"num_frames": 8},
           "generation": {"batch_size": 32, "max_new_tokens": 4, "decode_workers": 0},  # as in make_pairs
           "models": [{"name": k, "path": v} for k, v in models.items()]}
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # evaluate prints its own table; ours comes later
        results = evaluate(build_eval_config(raw, "synthetic eval"))
    return {m["name"]: {**m["metrics"], "by_kind": {k: c["accuracy"] for k, c in m["categories"].items()}}
            for m in results["models"]}


def pairs_by_colour(eval_dir: Path, runs: dict[str, str], world: Path, colours: set[str]) -> dict[str, dict]:
    """Per model (name -> its predictions' folder under `eval_dir`), the share of held-out pairs
    right (both questions, by the benchmark's whole-word match) on the videos that hold an
    object of one of `colours` (the ones the SFT data mislabels) and on the rest: where the
    errors the SFT data taught can show, and where they cannot."""
    from mmalign.evals.benchmarks.videohallucer import whole_word
    from mmalign.evals.runner import read_predictions
    from mmalign.io import iter_jsonl

    bench = [b for _, b in iter_jsonl(world / "bench.jsonl") if b["split"] == "test"]
    coloured = {vid: any(o["color"] in colours for o in json.loads((world / "truth" / f"{vid}.json").read_text())
                         ["scene"]["objects"]) for vid in {Path(b["video"]).stem for b in bench}}
    out = {}
    for name, run in runs.items():
        predictions = read_predictions(eval_dir / run)
        right = {True: [], False: []}
        for b in bench:
            right[coloured[Path(b["video"]).stem]].append(all(
                whole_word(b[role]["answer"], predictions[f"{b['id']}-{role}"]["prediction"])
                for role in ("basic", "hallucination")))
        out[name] = {"coloured": statistics.mean(right[True]), "coloured_pairs": len(right[True]),
                     "other": statistics.mean(right[False]), "other_pairs": len(right[False])}
    return out


def object_precision(captions: dict[str, str], world: Path) -> dict:
    """Caption-level object precision (1 - CHAIR_i) on the world's vocabulary: of all object
    mentions ("red circle", "blue squares", ...) in the generated captions, the share naming an
    object that is in that video (mmalign's truth files); pooled over videos. Also the share of
    captions with at least one hallucinated object (CHAIR_s) and the object recall."""
    from mmalign.perturb.facts import Truth
    from mmalign.perturb.lexicon import find_objects

    mentions = correct = bad_caps = found = present_total = 0
    for vid, text in captions.items():
        present = Truth.load(world / "truth" / f"{vid}.json").present()
        named = [m.text for m in find_objects(text, "world")]
        hits = sum(n in present for n in named)
        mentions, correct = mentions + len(named), correct + hits
        bad_caps += hits < len(named)
        found += len(present & set(named))
        present_total += len(present)
    return {"object_precision": correct / mentions if mentions else 0.0, "chair_s": bad_caps / max(1, len(captions)),
            "object_recall": found / max(1, present_total), "mentions": mentions}


def caption_eval(model_path: str, world: Path, size: dict, ids: list[str]) -> dict:
    """Greedy captions of the videos `ids`, scored by `object_precision`."""
    import torch

    from mmalign.data.video import load_video
    from mmalign.models.backbone import load_backbone
    from mmalign.config import ModelConfig
    from mmalign.models.generate import Prompt, generate
    from mmalign.world.build import CAPTION_PROMPT

    model, processor = load_backbone(ModelConfig(path=model_path))
    model.eval()
    captions = {}
    with torch.no_grad():
        for i in range(0, len(ids), 16):
            chunk = ids[i:i + 16]
            prompts = [Prompt(CAPTION_PROMPT, video=load_video(str(world / "videos" / f"{v}.mp4"), num_frames=8))
                       for v in chunk]
            for v, texts in zip(chunk, generate(model, processor, prompts, max_new_tokens=size["caption_tokens"])):
                captions[v] = texts[0].strip()
    return {**object_precision(captions, world), "examples": dict(list(captions.items())[:2])}


# ---------------------------------------------------------------- one seed

def run_base(size: dict, world: Path, work: Path) -> tuple[Path, dict]:
    """The shared start of every seed: a random small Qwen2.5-VL, its vision stand-in and its
    language model pretrained on the pretraining world (steps 0 and 1 of the module docstring),
    and that base's scores per question kind on the held-in validation videos."""
    pretrain_world = work / "pretrain_world"
    from mmalign.world import build_world

    build_world(pretrain_world, n_videos=size["pretrain_videos"], seed=PRETRAIN_SEED, object_sizes=size["object_sizes"],
                max_objects=size["max_objects"], show_progress=False)
    model = build_small_qwen(work / "base", size["hidden"], size["layers"], 0)
    vision = pretrain_vision(model, work / "vision", pretrain_world, size["vision_steps"])
    mix = instruction_mix(pretrain_world, ("train", "test"), set(), "instruction_mix_all")
    # The base trains alone: a DataLoader worker on the idle core encodes the next batch meanwhile
    # (400 steps: 65.6 s -> 48.4 s, the same weights to the byte).
    base = train_run(work / "base-lm", str(vision), "sft", mix, size, size["base_seed"], lr=size["base_lr"],
                     max_steps=size["base_steps"], loader_workers=1 if (os.cpu_count() or 1) > 1 else 0)
    val_bench = validation_bench(world, work, held_in_split(world, size)[1])
    return base, bench_eval({"base": str(base)}, val_bench, work / "base-lm" / "validation")["base"]


def run_sft(size: dict, world: Path, work: Path, seed: int, base: Path) -> Path:
    """The SFT model of one seed: the base fine-tuned on the held-in SFT mix (seeded data order)
    with the vision tower frozen. One per seed, so the SFT row has a spread of its own and every
    method is compared with its own seed's SFT model."""
    mislabels = size["sft_mislabels"]
    mix = instruction_mix(world, ("train",), set(held_in_split(world, size)[1]),
                          "sft_mix_train" + "".join(f"_{a}-as-{b}" for a, b in mislabels.items()), mislabels)
    return train_run(work / f"sft-seed{seed}", str(base), "sft", mix, size, seed, lr=size["sft_lr"],
                     max_steps=size["sft_steps"], freeze_vision=True)


def held_in_split(world: Path, size: dict) -> tuple[list[str], list[str]]:
    """Held-in videos for the pairs, and the next held-in ones for validation (choosing the
    alignment lr); the held-out test split chooses nothing."""
    train = split_ids(world, "train")
    return train[:size["pair_videos"]], train[size["pair_videos"]:size["pair_videos"] + size["val_videos"]]


BARE_NAME_STEPS = 40  # the first designs' alignment steps: their copies' folders name no steps


def steps_suffix(size: dict) -> str:
    """"-steps<n>" in the folder names of a design's aligned copies (finished runs are reused by
    folder, and one of other steps must not be taken for another's); none at BARE_NAME_STEPS, so
    the folders of the results files made before the default changed are still found."""
    return "" if size["align_steps"] == BARE_NAME_STEPS else f"-steps{size['align_steps']}"


def run_name(method: str, lr: float, size: dict) -> str:
    """An aligned copy's folder: the method, the lr and the steps (`steps_suffix`)."""
    return f"{method}-lr{lr:g}" + steps_suffix(size)


def unseen_world(work: Path, seed: int, n_videos: int, size: dict) -> tuple[Path, dict]:
    """A world of `n_videos` whose scenes no model here is trained or chosen on (not the
    benchmark world, seed 0, nor the pretraining world), built with the harness's object sizes,
    and its manifest: the default's held-out videos are its test split, and `second_world_check`
    scores a table's models on such worlds too."""
    from mmalign.world import build_world

    folder = work / f"second_world_seed{seed}"
    manifest = build_world(folder, n_videos=n_videos, seed=seed, object_sizes=size["object_sizes"],
                           max_objects=size["max_objects"], show_progress=False)
    return folder, manifest


def eval_folder(work: Path, seed: int, world_seed: int) -> Path:
    """Where one seed's models' answers on the held-out world `world_seed` are kept."""
    return work / f"seed{seed}" / ("eval" if world_seed == 0 else f"eval_world{world_seed}")


def train_file(method: str, pairs: dict) -> Path:
    """`method`'s training file: its pairs, or for an SFT control their chosen answers."""
    pair_name, train_method, *_ = TRAIN[method]
    return chosen_records(pairs[pair_name]) if train_method == "sft" else pairs[pair_name]


def align(method: str, lr: float, out: Path, sft: Path, pairs: dict, size: dict, seed: int) -> str:
    _, train_method, loss, data = TRAIN[method]
    return str(train_run(out, str(sft), train_method, train_file(method, pairs), size, seed, lr=lr,
                         max_steps=size["align_steps"], loss=loss, data=data))


def seed_inputs(seed: int, size: dict, world: Path, work: Path, base: Path) -> tuple[Path, dict]:
    """This seed's SFT model and its pairs (generator seed)."""
    sft = run_sft(size, world, work, seed, base)
    videos = held_in_videos(world, work, held_in_split(world, size)[0])
    pairs = {name: make_pairs(name, str(sft), videos, world, work / f"seed{seed}" / "pairs", size, seed)
             for name in PAIRS}
    pairs["rrpo_qa_open"] = open_pairs(pairs["rrpo_qa"])
    return sft, pairs


def trained_methods(size: dict, pairs: dict) -> list[str]:
    """The rows of size["methods"] whose pairs file holds a pair (an empty one cannot train),
    in TRAIN's order."""
    return [m for m, (pair_name, *_) in TRAIN.items() if m in size["methods"] and pairs[pair_name].stat().st_size]


def validation_run(seed: int, method: str, size: dict, world: Path, work: Path, inputs: tuple) -> dict:
    """One piece of the lr choice, on the held-in validation videos (used by no pair and left out
    of SFT): `method` aligned from this seed's SFT model at each lr of size["align_lrs"], each
    copy scored (keys lr<lr>); with method "sft", the SFT model itself (key sft). A caption
    metric also has each model caption the videos (`mentions`: the objects named, for the
    length rule). `inputs`: `seed_inputs`."""
    sft, pairs = inputs
    val_ids = held_in_split(world, size)[1]
    wdir = work / f"seed{seed}"
    if method == "sft":
        runs, out = {"sft": str(sft)}, wdir / "val-sft"
    else:
        runs = {f"lr{lr:g}": align(method, lr, wdir / run_name(method, lr, size), sft, pairs, size, seed)
                for lr in size["align_lrs"]}
        out = wdir / f"val-{method}{steps_suffix(size)}"  # its predictions, per steps
    res = bench_eval(runs, validation_bench(world, work, val_ids), out)
    if size["primary"] in CAPTION_METRICS:
        for name, path in runs.items():
            res[name] |= caption_eval(path, world, size, val_ids)
    return res


def validation_scores(runs: dict, size: dict) -> dict:
    """One seed's validation scores for `choose_lrs`, from its `validation_run`s (method -> its
    result, "sft" -> the SFT model's): per method, size["primary"], the guards and the scores
    per question kind at each lr, next to the SFT model's."""
    primary, sft = size["primary"], runs["sft"]["sft"]
    scores = {}
    for method in (m for m in TRAIN if m in runs):
        by_lr = {lr: runs[method][f"lr{lr:g}"] for lr in size["align_lrs"]}
        scores[method] = {"by_lr": {lr: r[primary] for lr, r in by_lr.items()}, "sft": sft[primary],
                          "by_kind": {lr: r["by_kind"] for lr, r in by_lr.items()}, "sft_by_kind": sft["by_kind"],
                          "bench": {lr: {m: r[m] for m in GUARDS} for lr, r in by_lr.items()},
                          "sft_bench": {m: sft[m] for m in GUARDS}}
        if primary in CAPTION_METRICS:
            scores[method] |= {"mentions": {lr: r["mentions"] for lr, r in by_lr.items()},
                               "sft_mentions": sft["mentions"]}
    return scores


def choose_lrs(scores: dict[int, dict], primary: str = PRIMARY, guard: str | None = None) -> dict:
    """Per method, one alignment lr for every seed, from the validation `scores` of the seeds
    given (seed -> validation_scores) in the metric `primary`. The target's own rule, on each
    seed's validation change against its own SFT model: of the lrs whose changes are beyond the
    spread, the one with the largest mean change (the good way); if none is, the largest mean
    change; ties: the smaller step. On one seed this is the best `primary`. Where the scores
    hold the objects named (a caption metric), an lr that changes them by more than 15% on any
    seed is passed over (the target's length rule, on validation), unless every lr does. With a
    `guard` (one of GUARDS), an lr whose mean validation change in it is below zero is passed
    over too (a gain in `primary` bought with the yes/no answers), unless every lr left is. The
    number of steps is fixed (size["align_steps"]), not chosen."""
    lower = primary in LOWER_IS_BETTER
    choice = {}
    for method in dict.fromkeys(m for s in scores.values() for m in s):
        runs = {seed: s[method] for seed, s in scores.items() if method in s}  # seeds whose generator kept pairs
        lrs = list(next(iter(runs.values()))["by_lr"])
        deltas = {lr: [r["by_lr"][lr] - r["sft"] for r in runs.values()] for lr in lrs}
        named = {lr: [relative_change(r["mentions"][lr], r["sft_mentions"]) for r in runs.values()]
                 for lr in lrs if all("mentions" in r for r in runs.values())}
        within = [lr for lr in lrs if lr not in named or all(abs(c) <= 0.15 for c in named[lr])] or lrs
        guarded = {lr: [r["bench"][lr][guard] - r["sft_bench"][guard] for r in runs.values()] for lr in lrs} if guard else {}
        within = [lr for lr in within if not guard or statistics.mean(guarded[lr]) >= -1e-9] or within
        best = max(within, key=lambda lr: (beyond_spread(deltas[lr], lower),
                                           statistics.mean(deltas[lr]) * (-1 if lower else 1), -lr))
        choice[method] = {"lr": best, "seeds": list(runs), "validation_deltas": deltas,
                          **({"validation_objects_named_change": named} if named else {}),
                          **({"guard": guard, f"validation_{guard}_deltas": guarded} if guard else {}),
                          f"validation_{primary}": {seed: r["by_lr"] for seed, r in runs.items()},
                          f"validation_sft_{primary}": {seed: r["sft"] for seed, r in runs.items()},
                          "validation_by_kind": {seed: r["by_kind"][best] for seed, r in runs.items()},
                          "validation_sft_by_kind": {seed: r["sft_by_kind"] for seed, r in runs.items()}}
    return choice


def held_out_run(seed: int, method: str, size: dict, test_world: Path, work: Path, inputs: tuple,
                 lr: float | None) -> dict:
    """One model of the held-out table: `method` aligned at `lr` from this seed's SFT model, or
    with method "sft" the SFT model itself (and `clean_video_check` of its pairs). Its benchmark
    answers on `test_world`'s test split go to the seed's eval folder under its run folder's name
    (method, lr and steps: a method's answers at another lr must not be taken for this one's),
    and its captions of those videos are scored."""
    sft, pairs = inputs
    wdir = work / f"seed{seed}"
    path = str(sft) if method == "sft" else align(method, lr, wdir / run_name(method, lr, size), sft, pairs, size, seed)
    run = "sft" if method == "sft" else Path(path).parent.name
    # scored with the seed's other models in `seed_result`
    bench_eval({run: path}, test_world, eval_folder(work, seed, size["held_out_world"]))
    out = {"path": path, "run": run, "captions": caption_eval(path, test_world, size, split_ids(test_world, "test"))}
    if method == "sft":
        out["clean_video"] = clean_video_check(path, pairs["rrpo_qa"])
    return out


def seed_result(seed: int, size: dict, test_world: Path, work: Path, inputs: tuple, lrs: dict, runs: dict) -> dict:
    """One seed's rows from its `held_out_run`s (method or "sft" -> result) on `test_world`. A
    method that could not train (no pair kept) gets its SFT model's scores, marked no_pairs."""
    evals = eval_folder(work, seed, size["held_out_world"])
    _, pairs = inputs
    rows = ["sft", *(m for m in TRAIN if m in size["methods"])]
    done = {m: runs[m] for m in rows if m in runs}
    # Every answer is in the eval folder by now: this scores them together, in one report.
    bench = bench_eval({r["run"]: r["path"] for r in done.values()}, test_world, evals)
    result = {}
    for name in rows:
        r = done.get(name, runs["sft"])
        result[name] = {**bench[r["run"]], **r["captions"], "no_pairs": name not in done}
        summary = Path(r["path"]) / ".." / "summary.json"
        if name != "sft" and name in done and summary.exists():
            result[name]["train_summary"] = json.loads(summary.read_text())
    if size["sft_mislabels"]:
        by_colour = pairs_by_colour(evals, {name: r["run"] for name, r in done.items()}, test_world,
                                    set(size["sft_mislabels"]))
        for name in rows:
            result[name]["pairs_by_colour"] = by_colour[name if name in done else "sft"]
    result["pairs"] = {k: sum(1 for _ in open(v)) for k, v in pairs.items()}
    result["pair_stages"] = {**pair_stages(pairs["rrpo_qa"]), "clean_video": runs["sft"]["clean_video"]}
    result["lrs"] = lrs
    return result


def run_seed(seed: int, size: dict, test_world: Path, work: Path, inputs: tuple, lrs: dict) -> dict:
    """One seed's alignment at the chosen lr per method (`lrs`) and its rows on `test_world`, in
    this process (main runs the same pieces as jobs, several seeds at once)."""
    _, pairs = inputs
    runs = {"sft": held_out_run(seed, "sft", size, test_world, work, inputs, None)}
    for method in trained_methods(size, pairs):
        if method in lrs:
            runs[method] = held_out_run(seed, method, size, test_world, work, inputs, lrs[method]["lr"])
    return seed_result(seed, size, test_world, work, inputs, lrs, runs)


def pair_stages(path: Path) -> dict:
    """Where the RRPO-recipe questions went: asked, answered right (no pair), wrong but nothing
    to rewrite, rewrite not minimal, kept; the wrong-answer rate and the mean changed fraction
    of the kept open-answer rewrites, and the kept pairs by question type."""
    from mmalign.perturb.run import report_path

    raw = path.with_name(path.name.replace(".balanced", ""))
    report = json.loads(report_path(raw).read_text())
    rows = [json.loads(line) for line in open(path)]
    asked = report["records"] + sum(report["filtered"].values())
    right = sum(n for k, n in report["filtered"].items() if k.startswith("1 "))
    opened = [r["meta"]["changed_fraction"] for r in rows if r["meta"]["question_type"] == "open"]
    types: dict[str, int] = {}
    for r in rows:
        types[r["meta"]["question_type"]] = types.get(r["meta"]["question_type"], 0) + 1
    return {"asked": asked, "wrong_answer_rate": (asked - right) / max(1, asked), "filtered": report["filtered"],
            "kept": report["records"], "kept_by_type": types, "trained_on": len(rows),
            "yes_no_balance_dropped": report["records"] - len(rows),
            "open_mean_changed_fraction": statistics.mean(opened) if opened else None}


def clean_video_check(model_path: str, pairs: Path) -> dict:
    """Of the short-answer pairs trained on (yes/no, option, word), how many the SFT model
    `model_path` already answers right on the clean video, the one the pair is trained with
    (it answered wrong on the perturbed one): such a pair corrects nothing. Per question kind
    (existence, attribute, direction, colour, ...) and in all."""
    import torch

    from mmalign.config import ModelConfig
    from mmalign.data.video import load_video
    from mmalign.io import iter_jsonl
    from mmalign.models.backbone import load_backbone
    from mmalign.models.generate import Prompt, generate
    from mmalign.perturb.qa import is_right

    rows = [r for _, r in iter_jsonl(pairs) if r["meta"]["question_type"] != "open"]
    model, processor = load_backbone(ModelConfig(path=model_path))
    model.eval()
    right: dict[str, list[bool]] = {}
    with torch.no_grad():
        for i in range(0, len(rows), 32):
            chunk = rows[i:i + 32]
            prompts = [Prompt(r["prompt"], video=load_video(str(pairs.parent / r["video"]), num_frames=8)) for r in chunk]
            for r, texts in zip(chunk, generate(model, processor, prompts, max_new_tokens=4)):
                question = {"type": r["meta"]["question_type"], "answer": r["chosen"]}
                right.setdefault(r["meta"]["question_kind"], []).append(is_right(question, texts[0]))
    every = [x for v in right.values() for x in v]
    return {"pairs": len(every), "right_on_clean": sum(every) / max(1, len(every)),
            "by_kind": {k: {"pairs": len(v), "right_on_clean": sum(v) / len(v)} for k, v in sorted(right.items())}}


# ---------------------------------------------------------------- report

HEADLINE = ("accuracy", "halluc_accuracy", "basic_accuracy", "object_precision", "chair_s", "object_recall")
JUDGED = ("accuracy", "halluc_accuracy", "object_precision", "chair_s")  # the candidate hallucination metrics
LOWER_IS_BETTER = ("chair_s",)
CAPTION_METRICS = ("object_precision", "chair_s")  # scored on generated captions, not on the yes/no pairs
GUARDS = ("accuracy", "halluc_accuracy")  # --guard: the yes/no metrics an lr choice may be told not to lower
NAMES = {"accuracy": "pair acc. ↑", "halluc_accuracy": "halluc. q acc. ↑", "basic_accuracy": "basic q acc. ↑",
         "object_precision": "caption obj. precision ↑", "chair_s": "CHAIR_s ↓", "object_recall": "caption obj. recall ↑"}


def shown_methods(rows: dict) -> tuple[str, ...]:
    """The METHODS a run trained (--methods), in METHODS' order: those `rows` (a table or one
    seed's results) hold."""
    return tuple(m for m in METHODS if m in rows)


def beyond_spread(deltas: list[float], lower_is_better: bool = False) -> bool:
    """The issue's rule: every seed's delta against its own SFT model points the good way, and
    the mean delta exceeds twice the deltas' std."""
    signed = [-d if lower_is_better else d for d in deltas]
    spread = statistics.stdev(signed) if len(signed) > 1 else 0.0
    return all(d > 0 for d in signed) and statistics.mean(signed) > 2 * spread


def relative_change(value: float, base: float) -> float:
    return (value / base - 1) if base else (0.0 if value == 0 else float("inf"))


def aggregate(per_seed: dict[int, dict]) -> dict:
    methods = shown_methods(per_seed[next(iter(per_seed))])
    table = {}
    for name in ("sft",) + methods:
        row = {}
        for metric in HEADLINE:
            vals = [per_seed[s][name][metric] for s in per_seed]
            deltas = [per_seed[s][name][metric] - per_seed[s]["sft"][metric] for s in per_seed]
            row[metric] = {"mean": statistics.mean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                           "min": min(vals), "max": max(vals), "values": vals,
                           "delta_mean": statistics.mean(deltas), "deltas": deltas,
                           "deltas_std": statistics.stdev(deltas) if len(deltas) > 1 else 0.0}
        kinds = sorted({k for s in per_seed for k in per_seed[s][name].get("by_kind", {})})
        row["by_kind"] = {k: statistics.mean(per_seed[s][name]["by_kind"].get(k, 0.0) for s in per_seed) for k in kinds}
        if all("pairs_by_colour" in per_seed[s][name] for s in per_seed):  # --sft-mislabels runs
            row["by_colour"] = {side: {"mean": statistics.mean(per_seed[s][name]["pairs_by_colour"][side] for s in per_seed),
                                       "deltas": [per_seed[s][name]["pairs_by_colour"][side]
                                                  - per_seed[s]["sft"]["pairs_by_colour"][side] for s in per_seed],
                                       "pairs": per_seed[next(iter(per_seed))][name]["pairs_by_colour"][f"{side}_pairs"]}
                                for side in ("coloured", "other")}
        row["mentions"] = [per_seed[s][name]["mentions"] for s in per_seed]
        row["mentions_change"] = [relative_change(per_seed[s][name]["mentions"], per_seed[s]["sft"]["mentions"])
                                  for s in per_seed]
        table[name] = row
    for name in methods:
        for metric in JUDGED:
            r = table[name][metric]
            r["beats_sft_beyond_spread"] = beyond_spread(r["deltas"], metric in LOWER_IS_BETTER)
        table[name]["length_within_15pct"] = all(abs(c) <= 0.15 for c in table[name]["mentions_change"])
    return table


def markdown(table: dict, meta: dict) -> str:
    seeds = meta["seeds"]
    primary = meta.get("primary", PRIMARY)
    methods = shown_methods(table)
    world = meta.get("held_out_world", 0)
    where = ("the benchmark world's test split" if not world else
             f"the test split of world seed {world}, whose scenes no model was trained or chosen on")
    lines = [f"Held-out videos: {where} ({meta['test_videos']} test videos, {meta['bench_pairs']} yes/no pairs), "
             f"mean ± std over seeds {seeds} (one SFT model per seed); Δ = mean ± std of the per-seed change vs "
             f"that seed's own SFT model. Primary metric: {NAMES[primary]} (fixed before this run; the first run's "
             "choice is in benchmarks/README.md).", "",
             "| method | " + " | ".join(NAMES[m] for m in HEADLINE)
             + " | objects named (Δ) | Δ " + NAMES[primary] + " | beyond spread: " + " / ".join(NAMES[m] for m in JUDGED)
             + " |", "|---|" + "---|" * (len(HEADLINE) + 3)]
    for name in ("sft",) + methods:
        row = table[name]
        silent = not any(row.get("mentions", [1]))  # no caption named any object: precision undefined
        cells = [("n/a (no object named)" if silent and m in CAPTION_METRICS else
                  f"{row[m]['mean']:.3f} ± {row[m]['std']:.3f}") for m in HEADLINE]
        named = f"{statistics.mean(row['mentions']):.0f}"  # object mentions in all test captions, seed mean
        if name == "sft":
            lines.append(f"| {LABELS[name]} | " + " | ".join(cells + [named, "", ""]) + " |")
            continue
        named += f" ({100 * statistics.mean(row['mentions_change']):+.0f}%)"
        p = row[primary]
        beats = " / ".join("**yes**" if row[m]["beats_sft_beyond_spread"] else "no" for m in JUDGED)
        if name in meta.get("no_pairs", {}):
            beats = f"**no pairs** (seeds {meta['no_pairs'][name]}: = SFT)"
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells + [named, f"{p['delta_mean']:+.3f} ± {p['deltas_std']:.3f}",
                                                            beats]) + " |")
    kinds = sorted({k for name in ("sft",) + methods for k in table[name].get("by_kind", {})})
    if kinds:
        lines += ["", "Pair accuracy per question kind on the held-out split, mean over seeds:", "",
                  "| method | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
        lines += [f"| {LABELS[name]} | " + " | ".join(f"{table[name]['by_kind'].get(k, 0.0):.3f}" for k in kinds) + " |"
                  for name in ("sft",) + methods]
    if "by_colour" in table["sft"]:
        sides = table["sft"]["by_colour"]
        wrong = ", ".join(f"{a} as {b}" for a, b in meta["size"]["sft_mislabels"].items())
        lines += ["", f"Held-out pairs (both questions right) on the videos that hold an object of a colour the SFT data "
                  f"mislabels ({wrong}; {sides['coloured']['pairs']} pairs) and on the others "
                  f"({sides['other']['pairs']} pairs), mean over seeds; Δ per seed against its own SFT model:", "",
                  "| method | mislabelled colour | Δ per seed | other videos | Δ per seed |", "|---|---|---|---|---|"]
        for name in ("sft",) + methods:
            c = table[name]["by_colour"]
            lines.append(f"| {LABELS[name]} | " + " | ".join(
                f"{c[side]['mean']:.3f} | " + ("" if name == "sft" else ", ".join(f"{d:+.3f}" for d in c[side]["deltas"]))
                for side in ("coloured", "other")) + " |")
    if meta.get("base_validation"):
        b = meta["base_validation"]
        lines += ["", f"The shared base model (vision stand-in + language model pretrained on the pretraining world) "
                  f"on the held-in validation videos: pair accuracy {b['accuracy']:.3f} ("
                  + ", ".join(f"{k} {v:.3f}" for k, v in sorted(b["by_kind"].items())) + ")."]
    if meta.get("lrs"):
        lr_seeds = next(iter(meta["lrs"].values())).get("seeds", seeds[:1])
        grid = list(meta["size"]["align_lrs"])
        how = (f"seed {lr_seeds[0]}, best {NAMES[primary]} of {grid}" if len(lr_seeds) == 1 else
               f"seeds {lr_seeds}, of {grid} by each seed's change in {NAMES[primary]} against its own SFT model: the "
               "largest mean change beyond the spread, else the largest mean change; the changes in brackets")
        if primary in CAPTION_METRICS:
            how += "; passing over an lr that changes the objects named by more than 15% on a seed"
        if meta["size"].get("guard"):
            how += f"; and one whose mean change in {NAMES[meta['size']['guard']]} is below zero"

        def changes(c: dict) -> str:
            if len(lr_seeds) == 1:
                return ""
            deltas = next(v for k, v in c["validation_deltas"].items() if float(k) == c["lr"])
            return " (" + ", ".join(f"{d:+.3f}" for d in deltas) + ")"

        lines += ["", f"Alignment lr per method ({meta['size']['align_steps']} steps of {meta['size']['batch_size']} "
                  f"pairs), chosen on held-in validation videos ({how}): "
                  + ", ".join(f"{LABELS[m]} {c['lr']:g}{changes(c)}" for m, c in meta["lrs"].items()) + "."]
    if meta.get("pair_stages"):
        lines += ["", "RRPO-recipe pairs (DPO and RRPO train on them), per seed: questions asked on the perturbed "
                  "video -> answered wrong -> kept after the rewrite and the minimal-edit filter:", ""]
        for seed, st in meta["pair_stages"].items():
            fraction = st["open_mean_changed_fraction"]
            lines.append(f"- seed {seed}: {st['asked']} asked, wrong-answer rate {st['wrong_answer_rate']:.3f}, "
                         f"{st['kept']} kept, {st['trained_on']} after the yes/no balance "
                         f"({', '.join(f'{k} {v}' for k, v in sorted(st['kept_by_type'].items()))}); "
                         f"dropped: " + ", ".join(f"{k[2:]} {v}" for k, v in sorted(st["filtered"].items()))
                         + (f"; open rewrites change {fraction:.3f} of the text on average" if fraction else "")
                         + (f"; the SFT model already answers {st['clean_video']['right_on_clean']:.2f} of the "
                            f"{st['clean_video']['pairs']} short-answer pairs right on the clean video ("
                            + ", ".join(f"{k} {v['right_on_clean']:.2f} of {v['pairs']}"
                                        for k, v in st["clean_video"]["by_kind"].items()) + ")"
                            if st.get("clean_video") else ""))
    if meta["size"]["n_videos"] < 100:
        lines += ["", "**Smoke-test numbers** (`--quick`: a one-layer model, a handful of videos, one step "
                      "per method): they show that every step ran, not what any method does."]
    reused = (f" (reusing the finished {', '.join(meta['reused'])} of an earlier run in its work folder; "
              "from scratch it takes longer)" if meta.get("reused") else "")
    lines += ["", f"Wall time {meta['wall_minutes']:.1f} min on {meta['cpus']} CPU cores{reused}; "
              f"regenerate with `{meta['command']}`."] + ([f"({meta['note']}.)"] if meta.get("note") else [])
    return "\n".join(lines) + "\n"


def plot(table: dict, path: Path, meta: dict) -> None:
    fig = figure(table, meta)  # sets the Agg backend before pyplot is imported here
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=120)
    plt.close(fig)


def figure(table: dict, meta: dict):
    """One column per candidate hallucination metric (JUDGED). Top: bars = mean over seeds, error
    bars = the seed std, dots = the seeds, dashed line = SFT. Bottom: each seed's change against
    its own SFT model (dots), their mean (bar) and twice their std (error bar): the target's rule
    is every dot on the good side of 0 and the bar past its error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = shown_methods(table)
    names = ("sft",) + methods
    colors = ["#888888" if n == "sft" else "#bbbbbb" if n.startswith("sft_chosen") else "#3b7dd8" for n in names]
    ticks = [LABELS[n].replace(" (control)", "\n(control)") for n in names]
    fig, axes = plt.subplots(2, len(JUDGED), figsize=(5.2 * len(JUDGED), 8.2))
    for ax, delta_ax, metric in zip(axes[0], axes[1], JUDGED):
        means = [table[n][metric]["mean"] for n in names]
        errs = [table[n][metric]["std"] for n in names]
        ax.bar(range(len(names)), means, yerr=errs, capsize=4, color=colors)
        for i, n in enumerate(names):
            ax.scatter([i] * len(table[n][metric]["values"]), table[n][metric]["values"], color="k", s=8, zorder=3)
        for i, n in enumerate(names):
            if metric.startswith("object_") and not any(table[n].get("mentions", [1])):
                ax.text(i, 0.01, "no object\nnamed", ha="center", va="bottom", fontsize=7, rotation=90)
        ax.axhline(means[0], color="#888888", ls="--", lw=1)
        ax.set_xticks(range(len(names)), ticks, rotation=30, ha="right", fontsize=8)
        ax.set_title(NAMES[metric])
        lo = min(min(table[n][metric]["values"]) for n in names)
        ax.set_ylim(max(0.0, lo - 0.1), min(1.0, max(m + e for m, e in zip(means, errs)) + 0.05) + 0.05)
        deltas = [table[n][metric]["deltas"] for n in methods]
        delta_ax.bar(range(len(methods)), [statistics.mean(d) for d in deltas], color=colors[1:],
                     yerr=[2 * (statistics.stdev(d) if len(d) > 1 else 0.0) for d in deltas], capsize=4)
        for i, d in enumerate(deltas):
            delta_ax.scatter([i] * len(d), d, color="k", s=8, zorder=3)
        delta_ax.axhline(0, color="#888888", lw=1)
        delta_ax.set_xticks(range(len(methods)), ticks[1:], rotation=30, ha="right", fontsize=8)
        delta_ax.set_title(f"Δ {NAMES[metric]} vs own SFT (bar ± 2 std)")
    where = ", ".join(([f"world seed {meta['held_out_world']}"] if meta.get("held_out_world") else [])
                      + ([f"{meta['test_videos']} test videos"] if "test_videos" in meta else []))
    fig.suptitle(f"Synthetic world, held-out videos{f' ({where})' if where else ''}: mean ± std over seeds "
                 f"{meta['seeds']} (dots: seeds)")
    fig.tight_layout()
    return fig


def seed_work(size: dict, world: Path, test_world: Path, work: Path, base: Path, jobs: "Jobs") -> tuple:
    """Every seed's SFT model and pairs (from `world`'s held-in videos), the lr choice on the
    validation videos (size["lr_on_all_seeds"]: every seed's, else the first seed's), and each
    seed's rows at the chosen lrs on `test_world`'s test split: (lrs, seed -> rows). Each piece
    is a job, submitted as soon as what it needs is done."""
    seeds = size["seeds"]
    lr_seeds = set(seeds if size["lr_on_all_seeds"] else seeds[:1])
    inputs, validation, runs = {}, {seed: {} for seed in lr_seeds}, {seed: {} for seed in seeds}
    lrs, validating = None, 0

    def held_out(seed):
        for method in trained_methods(size, inputs[seed][1]):
            if method in lrs:  # else no seed that chose the lrs kept a pair for it
                jobs.submit(("held-out", seed, method), held_out_run, seed, method, size, test_world, work,
                            inputs[seed], lrs[method]["lr"])

    with jobs:
        for seed in seeds:
            jobs.submit(("sft and pairs", seed), seed_inputs, seed, size, world, work, base)
        for (step, seed, *method), result in jobs.finished():  # method: a row of the table, "sft" among them
            if step == "sft and pairs":
                inputs[seed] = result
                jobs.submit(("held-out", seed, "sft"), held_out_run, seed, "sft", size, test_world, work, result, None)
                if seed in lr_seeds:
                    for m in ("sft", *trained_methods(size, result[1])):
                        jobs.submit(("validation", seed, m), validation_run, seed, m, size, world, work, result)
                        validating += 1
                elif lrs is not None:
                    held_out(seed)
            elif step == "validation":
                validation[seed][method[0]] = result
                validating -= 1
                if not validating and lr_seeds <= set(inputs):
                    lrs = choose_lrs({s: validation_scores(validation[s], size) for s in seeds if s in lr_seeds},
                                     size["primary"], size["guard"])
                    for s in inputs:
                        held_out(s)
            else:
                runs[seed][method[0]] = result
    return lrs, {seed: seed_result(seed, size, test_world, work, inputs[seed], lrs, runs[seed]) for seed in seeds}


class Jobs:
    """The seeds' work after the shared base, as independent jobs on `workers` processes (in this
    one when `workers` is 1), each result handed back as it finishes: a job that needs others'
    results is submitted as soon as they are there, so no process waits for a seed's slowest
    step. Each job's work is its own (seed, folders and files), and the small models here train
    as fast on one core as on two: two processes of one thread each do it in about half the
    time. Spawned, not forked: the parent has run torch."""

    def __init__(self, workers: int, bar, videos: int):
        self.pool, self.bar, self.pending, self.ready = None, bar, {}, []
        if workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_worker_init, initargs=(PAIRS, videos))

    def __enter__(self):
        return self

    def __exit__(self, kind, *_):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=kind is not None)

    def submit(self, key: tuple, fn, *args) -> None:
        self.bar.total += 1
        if self.pool is None:
            self.bar.set_description(" ".join(map(str, key)))
            self.ready.append((key, fn(*args)))
        else:
            self.pending[self.pool.submit(fn, *args)] = key

    def finished(self):
        """(key, result) of every job in the order they finish, those submitted meanwhile too."""
        from concurrent.futures import FIRST_COMPLETED, wait

        while self.ready or self.pending:
            if not self.ready:
                done, _ = wait(self.pending, return_when=FIRST_COMPLETED)
                self.ready += [(self.pending.pop(f), f.result()) for f in done]
            key, result = self.ready.pop(0)
            self.bar.set_description(" ".join(map(str, key)))
            self.bar.update(1)
            yield key, result


def _worker_init(pairs: dict, videos: int) -> None:
    """A worker process starts from a fresh import: the pair settings the command line changed
    (PAIRS), the video cache, and one torch thread (one process per core instead)."""
    import torch

    PAIRS.clear()
    PAIRS.update(pairs)
    _cache_videos(videos)
    torch.set_num_threads(1)


def _cache_videos(videos: int) -> None:
    """Decode each video once per process: the SFT records share a video ~25 times (a copy is
    handed out, so no consumer can alter the cached frames). `videos`: how many the run reads
    (both worlds), so none is decoded twice (~100 KB each at 8 frames of 64 x 64)."""
    import dataclasses
    import functools

    import mmalign.data.video as video

    cached = functools.lru_cache(maxsize=videos)(video.load_video)

    def load_video(path, **kw):
        v = cached(path, **kw)
        return dataclasses.replace(v, frames=v.frames.copy()) if dataclasses.is_dataclass(v) else v

    video.load_video = load_video


def work_folder(quick: bool = False, max_changed_fraction: float = MAX_CHANGED_FRACTION, recipe: dict | None = None,
                mislabels: dict | None = None) -> str:
    """A run's default work folder. Finished steps are reused by folder, so another pair filter,
    base recipe or SFT data needs its own (the default command's: SFT data with purple as blue)."""
    mislabels = FULL["sft_mislabels"] if mislabels is None else mislabels
    return "runs/synthetic_alignment" + ("_quick" if quick else "") + (
        f"_mcf{max_changed_fraction:g}" if max_changed_fraction != MAX_CHANGED_FRACTION else "") + recipe_suffix(
        recipe or {}) + "".join(f"_sft-{a}-as-{b}" for a, b in mislabels.items())


def design_flags(size: dict) -> dict[str, str]:
    """Each DESIGN key of `size` as the flag that sets it (a run's command names those that differ
    from the default's)."""
    mislabels = " ".join(f"{a}={b}" for a, b in size["sft_mislabels"].items())
    return {"sft_mislabels": " --sft-mislabels" + (f" {mislabels}" if mislabels else ""),
            "align_steps": f" --align-steps {size['align_steps']}",
            "align_lrs": " --align-lrs " + " ".join(f"{x:g}" for x in size["align_lrs"]),
            "lr_on_all_seeds": " --lr-on-all-seeds" if size["lr_on_all_seeds"] else " --no-lr-on-all-seeds",
            "primary": f" --primary {size['primary']}", "guard": f" --guard {size['guard'] or 'none'}",
            "held_out_world": f" --held-out-world {size['held_out_world']}",
            "methods": " --methods " + " ".join(size["methods"])}


def add_recipe_args(ap: argparse.ArgumentParser) -> None:
    """The vision stand-in / base recipe keys (RECIPE) on a command line: the harness's and the
    probe's, which trains in the harness's work folder."""
    ap.add_argument("--vision-steps", type=int, default=None,
                    help=f"vision stand-in steps (default {FULL['vision_steps']}; 6000 reads motion, see benchmarks/README.md)")
    ap.add_argument("--base-steps", type=int, default=None,
                    help=f"base language model steps (default {FULL['base_steps']})")
    ap.add_argument("--base-seed", type=int, default=None,
                    help=f"the base's data-order seed (default {FULL['base_seed']}; whether a base learns to read the "
                         "video depends on it, see benchmarks/README.md)")


def recipe_of(args: argparse.Namespace, size: dict) -> dict:
    """The RECIPE keys the command line changed from `size` (a seed among them, not only steps)."""
    return {key: getattr(args, key) for key in RECIPE
            if getattr(args, key) is not None and getattr(args, key) != size[key]}


def recipe_suffix(recipe: dict) -> str:
    """The work folder's name for a changed recipe: finished steps are reused by folder."""
    return "".join(f"_{k}{v}" for k, v in recipe.items())


def recipe_flags(recipe: dict) -> str:
    return "".join(f" --{k.replace('_', '-')} {v}" for k, v in recipe.items())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, one seed (< 1 min)")
    ap.add_argument("--work", default=None, help="folder of intermediate runs (default runs/synthetic_alignment[_quick]"
                                                         "[_<recipe>][_sft-<colour>-as-<colour>])")
    ap.add_argument("--results", default=None,
                    help="results folder (default benchmarks/results; --quick or any flag that changes what is trained "
                         "or scored: the work folder, so the committed table is not overwritten)")
    ap.add_argument("--seeds", type=int, nargs="*", default=None, help="override the seeds")
    add_recipe_args(ap)
    ap.add_argument("--lr-on-all-seeds", action=argparse.BooleanOptionalAction, default=None,
                    help="choose each method's lr on every seed's validation videos by the target's rule (the "
                         "default; --no-lr-on-all-seeds: on the first seed's)")
    ap.add_argument("--sft-mislabels", nargs="*", default=None, metavar="COLOR=WRONG",
                    help="the SFT data's annotator writes each COLOR as WRONG (default purple=blue): an SFT model that "
                         "hallucinates what its data taught it; the base, the pairs' questions and every score keep "
                         "the truth. The flag alone, with no pair after it: exact-truth SFT")
    ap.add_argument("--workers", type=int, default=None,
                    help="processes for the seeds' work after the shared base (default: one per CPU core; with "
                         "--quick one; each runs one torch thread)")
    ap.add_argument("--report-only", action="store_true", help="re-render md / png from the results json")
    ap.add_argument("--max-changed-fraction", type=float, default=MAX_CHANGED_FRACTION,
                    help="RRPO-recipe pairs (DPO and RRPO train on them): drop open-answer rewrites whose differing "
                         "spans cover more than this share of the two texts")
    ap.add_argument("--primary", choices=JUDGED, default=None,
                    help=f"the metric each lr is chosen by on the validation videos (default {FULL['primary']}; a "
                         "caption metric captions the validation videos too, and passes over an lr that changes the "
                         "objects named by more than 15%%); fix it before looking at the held-out split")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=None,
                    help=f"train and score only these rows (default {' '.join(FULL['methods'])}); the SFT row is "
                         "always there")
    ap.add_argument("--align-steps", type=int, default=None,
                    help=f"alignment steps of every method (default {FULL['align_steps']}); the aligned copies get "
                         "folders of their own, the rest of the work folder is shared")
    ap.add_argument("--align-lrs", type=float, nargs="+", default=None,
                    help=f"the lrs each method's lr is chosen from (default {' '.join(f'{x:g}' for x in FULL['align_lrs'])})")
    ap.add_argument("--guard", choices=(*GUARDS, "none"), default=None,
                    help=f"pass over an lr whose mean change in this yes/no metric on the validation videos is below "
                         f"zero (default {FULL['guard']}: no caption gain bought with the yes/no answers; none: no guard)")
    ap.add_argument("--held-out-world", type=int, default=None, metavar="SEED",
                    help=f"the world whose test split the table is scored on (default {FULL['held_out_world']}, "
                         f"{FULL['held_out_videos'] // 4} test videos no model has seen; 0: the benchmark world's own "
                         f"test split, {FULL['n_videos'] // 4} videos)")
    args = ap.parse_args(argv)
    if args.report_only:
        stem = Path(args.results or ROOT / "benchmarks/results") / "synthetic_alignment"
        data = json.loads(Path(f"{stem}.json").read_text())
        return write_report(stem, aggregate(data["per_seed"]), data["meta"], data["per_seed"])
    PAIRS["rrpo_qa"]["rrpo"]["max_changed_fraction"] = args.max_changed_fraction
    other = args.max_changed_fraction != MAX_CHANGED_FRACTION
    defaults = QUICK if args.quick else FULL
    size = dict(defaults)
    if args.seeds:
        size["seeds"] = tuple(args.seeds)
    recipe = recipe_of(args, size)
    size.update(recipe)
    from mmalign.world import COLORS

    if args.sft_mislabels is not None:
        size["sft_mislabels"] = dict(item.partition("=")[::2] for item in args.sft_mislabels)
    for color, wrong in size["sft_mislabels"].items():
        if color not in COLORS or wrong not in COLORS or color == wrong:
            ap.error(f"--sft-mislabels {color}={wrong}: need two different colours of {', '.join(COLORS)}")
    mislabels = size["sft_mislabels"]
    chosen = {"lr_on_all_seeds": args.lr_on_all_seeds, "primary": args.primary, "align_steps": args.align_steps,
              "align_lrs": tuple(args.align_lrs) if args.align_lrs else None, "held_out_world": args.held_out_world,
              "methods": tuple(m for m in METHODS if m in args.methods) if args.methods else None}
    size.update({k: v for k, v in chosen.items() if v is not None})
    if args.guard is not None:
        size["guard"] = None if args.guard == "none" else args.guard
    if size["align_steps"] < 1:
        ap.error(f"--align-steps {size['align_steps']}: need at least 1")
    if size["held_out_world"] == PRETRAIN_SEED:
        ap.error(f"--held-out-world {PRETRAIN_SEED}: that is the pretraining world, which the base was trained on")
    work = Path(args.work or ROOT / work_folder(args.quick, args.max_changed_fraction, recipe, mislabels))
    # What this run trains and scores differently from the default command, as flags.
    design = (f" --max-changed-fraction {args.max_changed_fraction:g}" if other else "") + recipe_flags(recipe) + (
        "".join(flag for key, flag in design_flags(size).items() if size[key] != defaults[key])) + (
        f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds else "")
    # benchmarks/results holds the default command's committed table: another design without
    # --results writes beside its runs instead of overwriting it.
    results = Path(args.results or (work if args.quick or design else ROOT / "benchmarks/results"))
    results.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    # A rerun reuses the steps an earlier run finished: its wall time is not the harness's.
    reused = [step for step in ["vision", "base-lm", *(f"sft-seed{seed}" for seed in size["seeds"])]
              if (work / step / ("built.json" if step == "vision" else "summary.json")).exists()]

    from mmalign.world import build_world

    world = work / "world"
    manifest = build_world(world, n_videos=size["n_videos"], seed=0, object_sizes=size["object_sizes"],
                           max_objects=size["max_objects"], show_progress=False)
    test_world, manifest = (unseen_world(work, size["held_out_world"], size["held_out_videos"], size)
                            if size["held_out_world"] else (world, manifest))
    videos = size["n_videos"] + size["pretrain_videos"] + (size["held_out_videos"] if size["held_out_world"] else 0)
    _cache_videos(videos)
    import torch

    # One thread here as in each worker: as fast for models this small, and a seed's floats (so
    # its greedy answers) are then the same whether it runs here or in a worker.
    torch.set_num_threads(1)
    # --quick's jobs take seconds: two spawned processes would cost more than they save.
    workers = max(1, args.workers or (1 if args.quick else os.cpu_count() or 1))
    if getattr(sys.modules.get(__name__), "main", None) is not main:
        # A worker finds this module's functions by its name; loaded under another identity (from
        # its file path, as some tests do) it cannot be found so, and runs its jobs here.
        workers = 1
    with tqdm(total=1, unit="job") as bar:
        bar.set_description("vision stand-in and base model")
        base, base_validation = run_base(size, world, work)
        bar.update(1)
        lrs, per_seed = seed_work(size, world, test_world, work, base, Jobs(workers, bar, videos))
    table = aggregate(per_seed)
    command = "python benchmarks/synthetic_alignment.py" + (" --quick" if args.quick else "") + design + (
        f" --results {args.results}" if args.results and not args.quick else "")
    meta = {"command": command, "primary": size["primary"], "lrs": lrs,
            "base_validation": base_validation,
            "pair_stages": {s: per_seed[s]["pair_stages"] for s in per_seed},
            "seeds": list(size["seeds"]), "size": size, "wall_minutes": (time.time() - t0) / 60, "reused": reused,
            "cpus": os.cpu_count(), "workers": workers, "test_videos": manifest["counts"]["test_videos"],
            "held_out_world": size["held_out_world"],
            "bench_pairs": sum(json.loads(line)["split"] == "test" for line in open(test_world / "bench.jsonl")),
            "pairs": {"generators": PAIRS, "training": {k: {"pairs": v[0], "method": v[1], "loss": v[2], "data": v[3]}
                                                         for k, v in TRAIN.items() if k in size["methods"]}}}
    return write_report(results / "synthetic_alignment", table, meta, per_seed, work)


def write_report(stem: Path, table: dict, meta: dict, per_seed: dict, work: Path | None = None) -> dict:
    no_pairs: dict[str, list] = {}
    for seed, res in per_seed.items():
        for name in shown_methods(res):
            if res[name].get("no_pairs"):
                no_pairs.setdefault(name, []).append(int(seed))
    meta["no_pairs"] = no_pairs
    from mmalign.io import write_result_json

    write_result_json(f"{stem}.json", {"meta": meta, "table": table, "per_seed": per_seed}, ROOT, work=work)
    md = markdown(table, meta)
    Path(f"{stem}.md").write_text(md)
    plot(table, Path(f"{stem}.png"), meta)
    print(md)
    return table


if __name__ == "__main__":
    main()
