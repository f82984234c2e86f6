"""Video perturbations and the pairs they make: clean-video answer = chosen, perturbed-video
answer = rejected.

Every perturbation is a list of `mmalign.data.video_ops` ops (pure and seeded, so the trainer
replays it from the record's `rejected_video`, which also makes every pair a conditional pair:
the same chosen answer under the perturbed video). Strength 0 is the identity, and the
strength sets the difficulty: a stronger perturbation is easier to tell from the clean video.

- temple: TEMPLE's clip-level drop / shuffle / reverse with m in {2, 4, 8, 16}, on the pixels
  or, as TEMPLE's code does, on the list of per-clip captions (`perturb_captions` draws the
  same permutation as the pixel op for the same record). Filters: a rejected text that
  contains the chosen one; a drop whose caption is not shorter; a shuffle / reverse whose
  length ratio is over 1.5.
- rrpo: RRPO's mask (25-50% of the frame area) plus local temporal shuffle.
- video: frame-level perturbations by name and strength (`frame_ops`).
"""

from __future__ import annotations

import math

import numpy as np

from mmalign.data.video import Video
from mmalign.data.video_ops import apply_ops, temple_clip_order

from .diff import changed_fraction, diff_spans
from .facts import clip_captions
from .pair import (Item, PairBuilder, Result, chosen_answers, edit_difficulty, make_record, op_seed, record_rng,
                   sentence_labels, with_truth)

DROP_LIKE = ("drop", "frame_drop", "speed_up")  # the rejected side sees less: its text should be shorter
ORDER_LIKE = ("shuffle", "reverse", "local_shuffle")  # same content, other order: similar length


# ---------------------------------------------------------------- perturbations


def temple_ops(kind: str, m: int, clips: int) -> list[dict]:
    return [{"op": "temple", "kind": kind, "m": int(m), "clips": int(clips)}]


def temple_difficulty(m: int) -> float:
    """m = 2, 4, 8, 16 -> 0.8, 0.6, 0.4, 0.2 (TEMPLE's curriculum runs 16 -> 2: easy to hard);
    m = 1 (the identity) -> 1."""
    return max(0.0, 1.0 - math.log2(m) / 5)


def perturb_captions(captions: list[str], kind: str, m: int, record_id: str) -> tuple[list[str], list[int]]:
    """TEMPLE's caption-list perturbation for one record: the clips `temple` would show, drawn
    with the seed the trainer gives that record's first op, so that the rejected_video op
    {"op": "temple", "kind", "m", "clips": len(captions)} is the same perturbation in pixels."""
    order = temple_clip_order(len(captions), kind, m, np.random.default_rng([op_seed(record_id), 0]))
    return [captions[i] for i in order], [int(i) for i in order]


def frame_ops(name: str, strength: float, n_frames: int, item: Item | None = None,
              rng: np.random.Generator | None = None) -> list[dict]:
    """The ops of a frame-level perturbation at `strength` in [0, 1] (0 = identity) on a clip of
    `n_frames` sampled frames. object_mask needs the item's truth (its objects' boxes)."""
    s = float(strength)
    last = max(n_frames - 1, 0)
    if name == "frame_drop":
        return [{"op": "drop", "keep": round(1 - 0.75 * s, 4)}]
    if name == "repeat":
        return [{"op": "repeat", "fraction": round(s, 4)}]
    if name == "speed_up":
        return [{"op": "speed", "factor": round(1 + 3 * s, 4)}]
    if name == "slow_down":
        return [{"op": "speed", "factor": round(1 / (1 + 3 * s), 4)}]
    if name == "freeze":
        return [{"op": "freeze", "start": round((1 - s) * last)}]
    if name == "crop":
        return [{"op": "crop", "area": round(1 - 0.75 * s, 4)}]
    if name == "blur":
        return [{"op": "blur", "sigma": round(0.05 * s, 4)}]
    if name == "noise":
        return [{"op": "noise", "std": round(64 * s, 2)}]
    if name == "mask":
        return [{"op": "mask", "area": round(0.5 * s, 4)}]
    if name == "local_shuffle":
        return [{"op": "shuffle", "window": 1 + round(s * last)}]
    if name == "reverse":
        return [{"op": "reverse", "block": max(1, round((1 - s) * n_frames))}]
    if name == "object_mask":
        return _object_mask_ops(s, item, rng)
    raise ValueError(f"unknown frame perturbation {name!r}")


def _object_mask_ops(s: float, item: Item | None, rng) -> list[dict]:
    if item is None or item.truth is None or item.video is None:
        raise ValueError("object_mask needs the video's truth (object boxes)")
    objects = sorted(o.id for o in item.truth.scene.objects)
    k = math.ceil(s * len(objects))
    chosen = sorted(int(i) for i in (rng or np.random.default_rng(item.seed)).choice(objects, size=k, replace=False))
    boxes = item.truth.boxes(item.video.indices, chosen) if k else []
    return [{"op": "mask_boxes", "boxes": boxes, "fill": list(item.truth.scene.background)}]


def rrpo_ops(c, item: Item, tag: str) -> tuple[list[dict], float]:
    """RRPO's perturbation of one record (`c`: the rrpo config section): one box over an area
    drawn from mask_area, then a local shuffle of shuffle_window frames; and that area."""
    area = round(float(record_rng(item, tag).uniform(*c.mask_area)), 4)
    ops = [{"op": "mask", "area": area}]
    if c.shuffle_window > 1:
        ops.append({"op": "shuffle", "window": c.shuffle_window})
    return ops, area


def temple_filter(chosen: str, rejected: str, kind: str, max_ratio: float = 1.5) -> str | None:
    """TEMPLE's pair filters; the reason a pair is dropped, or None to keep it."""
    if chosen.strip() in rejected:
        return "rejected contains chosen"
    if kind in DROP_LIKE and len(rejected) >= len(chosen):
        return "drop: rejected not shorter"
    if kind in ORDER_LIKE and max(len(chosen), len(rejected)) > max_ratio * max(1, min(len(chosen), len(rejected))):
        return f"length ratio > {max_ratio:g}"
    return None


def _clips_of(video: Video, n: int) -> list[Video]:
    """The sampled clip cut into n consecutive clips (as the `temple` op cuts it)."""
    parts = np.array_split(np.arange(len(video.frames)), min(n, len(video.frames)))
    return [Video(video.frames[p], [video.timestamps[i] for i in p], video.source_fps, video.path,
                  [video.indices[i] for i in p] if video.indices else []) for p in parts]


def perturbed(video: Video, ops: list[dict], record_id: str) -> Video:
    frames = apply_ops(video.frames, ops, seed=op_seed(record_id))
    n = len(frames)
    # Timestamps keep the clip's span, spread over the new frame count (speed / drop change it).
    stamps = list(np.linspace(video.timestamps[0], video.timestamps[-1], n)) if n > 1 else video.timestamps[:1]
    return Video(frames, [float(t) for t in stamps], video.source_fps, video.path)


# ---------------------------------------------------------------- pair builders


class VideoPairs(PairBuilder):
    """Shared pixel-level flow: plan perturbations per video, ask the model on each perturbed
    clip, filter, and build records with spans from the differ."""

    name = "video"

    def plan(self, item: Item) -> list[tuple[str, list[dict], str, float, dict]]:
        """(tag, ops, filter kind, difficulty, meta) for each pair of this video."""
        raise NotImplementedError

    def run(self, phase: str, items: list[Item]) -> list[Result]:
        results = {it.key: Result(it.key) for it in items}
        from_model = self.cfg.answers == "model"
        chosen = {} if from_model else chosen_answers(self.cfg, self.backend, items, results)
        ready = items if from_model else [it for it in items if it.key in chosen]
        jobs = [(it, *p) for it in ready for p in self.plan(it)]
        # One generate call for the clean and the perturbed clips of the whole batch.
        prompts = [(self.cfg.prompt, it.video) for it in ready] if from_model else []
        prompts += [(self.cfg.prompt, perturbed(it.video, ops, f"{it.stem}-{tag}")) for it, tag, ops, *_ in jobs]
        texts = self.backend.need("generate", f"generator {self.name}")(prompts)
        if from_model:
            chosen, texts = {it.key: t for it, t in zip(ready, texts)}, texts[len(ready):]
        for (it, tag, ops, kind, difficulty, meta), rejected in zip(jobs, texts):
            self._add(results[it.key], it, tag, chosen[it.key], rejected, ops, kind, difficulty, meta)
        return list(results.values())

    def _add(self, result: Result, it: Item, tag, chosen, rejected, ops, kind, difficulty, meta) -> None:
        if not (chosen.strip() and rejected.strip()):
            result.drop("empty answer")
            return
        c_spans, r_spans = diff_spans(chosen, rejected)
        reason = self.filter(chosen, c_spans, rejected, r_spans, kind)
        if reason:
            result.drop(reason)
            return
        if difficulty is None:  # no strength to go by: the smaller the change, the harder the pair
            difficulty = edit_difficulty(chosen, c_spans, rejected, r_spans)
        result.records.append(make_record(self.cfg, it, tag, chosen, c_spans, rejected, r_spans, generator=self.name,
                                          labels=self.labels(it, chosen, rejected), ops=ops,
                                          difficulty=difficulty, meta=meta))

    def labels(self, item: Item, chosen: str, rejected: str):
        return sentence_labels(item, chosen, rejected)

    def filter(self, chosen: str, chosen_spans, rejected: str, rejected_spans, kind: str) -> str | None:
        return temple_filter(chosen, rejected, kind, self.cfg.temple.max_length_ratio)


class FrameOpsPairs(VideoPairs):
    """generator: video — one pair per configured {name, strength}; difficulty = 1 - strength."""

    name = "video"

    NO_BOXES = "object_mask left out: the video has no truth file (object boxes)"

    def plan(self, item: Item):
        out = []
        for p in self.cfg.video.perturbations:
            if p["name"] == "object_mask" and item.truth is None:
                continue  # the other perturbations still make pairs of this video (counted in run)
            tag = f"video-{p['name']}-s{p['strength']:g}"
            ops = frame_ops(p["name"], p["strength"], len(item.video.frames), item, record_rng(item, tag))
            out.append((tag, ops, p["name"], 1.0 - p["strength"], {"perturbation": p["name"], "strength": p["strength"]}))
        return out

    def run(self, phase: str, items: list[Item]) -> list[Result]:
        results = super().run(phase, items)
        masks = sum(p["name"] == "object_mask" for p in self.cfg.video.perturbations)
        for it, result in zip(items, results):
            if masks and it.truth is None:
                for _ in range(masks):
                    result.drop(self.NO_BOXES)
        return results


class RrpoPairs(VideoPairs):
    """generator: rrpo — RRPO's perturbation: one box over 25-50% of the frame area plus a local
    temporal shuffle; the spans of the differing sub-sequences come from the differ.
    (RRPO then has an LLM rewrite the wrong answer as a minimal edit of the ground truth; here
    `max_changed_fraction` keeps only pairs that already are close enough.)"""

    name = "rrpo"

    def plan(self, item: Item):
        c = self.cfg.rrpo
        out = []
        for k in range(c.pairs_per_video):
            tag = f"rrpo{k}"
            ops, area = rrpo_ops(c, item, tag)
            out.append((tag, ops, "rrpo", None, {"perturbation": "mask+local_shuffle", "mask_area": area,
                                                  "shuffle_window": c.shuffle_window}))
        return out

    def filter(self, chosen: str, chosen_spans, rejected: str, rejected_spans, kind: str) -> str | None:
        if chosen.strip() == rejected.strip():
            return "identical answers"
        if changed_fraction(chosen, chosen_spans, rejected, rejected_spans) > self.cfg.rrpo.max_changed_fraction:
            return "not a minimal edit (rrpo.max_changed_fraction)"
        return None


class TemplePairs(VideoPairs):
    """generator: temple — see the module docstring; `temple.source` picks captions or pixels."""

    name = "temple"

    def _grid(self):
        return [(k, m) for k in self.cfg.temple.kinds for m in self.cfg.temple.magnitudes]

    def plan(self, item: Item):  # pixels
        n = min(self.cfg.temple.clips, len(item.video.frames))
        return [(f"temple-{k}-m{m}", temple_ops(k, m, n), k, temple_difficulty(m),
                 {"perturbation": k, "m": m, "clips": n, "source": "pixels"}) for k, m in self._grid()]

    def run(self, phase: str, items: list[Item]) -> list[Result]:
        if self.cfg.temple.source == "pixels":
            return super().run(phase, items)
        results = {it.key: Result(it.key) for it in items}
        captions = self._clip_captions(items, results)
        grid = self._grid()
        ready = [it for it in items if it.key in captions]
        lists, plans = [], []  # per video: the clean list, then one perturbed list per (kind, m)
        for it in ready:
            lists.append(captions[it.key])
            for kind, m in grid:
                tag = f"temple-{kind}-m{m}"
                perturbed, order = perturb_captions(captions[it.key], kind, m, f"{it.stem}-{tag}")
                lists.append(perturbed)
                plans.append((tag, kind, m, order))
        texts = self._summarise(lists)
        for v, it in enumerate(ready):
            block = texts[v * (1 + len(grid)):(v + 1) * (1 + len(grid))]
            n = len(captions[it.key])
            for (tag, kind, m, order), rejected in zip(plans[v * len(grid):(v + 1) * len(grid)], block[1:]):
                meta = {"perturbation": kind, "m": m, "clips": n, "source": "captions", "selected_clips": order}
                self._add(results[it.key], it, tag, block[0], rejected, temple_ops(kind, m, n), kind,
                          temple_difficulty(m), meta)
        return list(results.values())

    def labels(self, item: Item, chosen: str, rejected: str):
        # A reordered or shortened caption is wrong as a whole, not sentence by sentence.
        return None, None

    def _clip_captions(self, items: list[Item], results: dict[str, Result]) -> dict[str, list[str]]:
        t = self.cfg.temple
        if t.clip_captions == "truth":
            have = with_truth(items, results, "temple.clip_captions: truth, but the video has no truth file "
                                              "(temple.clip_captions=model captions each clip with the model)")
            return {it.key: clip_captions(it.truth.scene, t.clips) for it in have}
        clips = {it.key: _clips_of(it.video, t.clips) for it in items}
        generate = self.backend.need("generate", "temple.clip_captions: model")
        texts = iter(generate([(t.clip_prompt, c) for it in items for c in clips[it.key]]))
        return {it.key: [next(texts) for _ in clips[it.key]] for it in items}

    def _summarise(self, lists: list[list[str]]) -> list[str]:
        t = self.cfg.temple
        if t.summarizer == "join":
            return [" ".join(c.strip() for c in caps) for caps in lists]
        generate = self.backend.need("generate", "temple.summarizer: model")
        prompts = [t.summary_prompt.format(captions="\n".join(f"{i + 1}. {c.strip()}" for i, c in enumerate(caps)))
                   for caps in lists]
        return generate([(p, None) for p in prompts])
