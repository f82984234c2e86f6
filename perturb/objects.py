"""Object-centric hard negatives (OSPO, 2025; official code KU-AGI/OSPO), as conditional pairs.

OSPO perturbs the objects of a prompt (replace / swap / drop) and keeps a negative when a
yes/no self-check moves by more than a margin. In mmalign the response is text and the
condition is the video, so for an object the answer mentions and the truth has boxes for:

- replace: every mention of it names an absent object instead, a near miss (same colour or
  same shape) — "the red circle" -> "the red square";
- swap: two mentioned objects trade colours (an attribute-binding error);
- drop: the sentences about it are removed (an omission);

and the record's rejected_video masks that object (both, for a swap) in every frame with the
`mask_boxes` op, so OSPO's conditional term compares the chosen answer under the real and the
object-masked video. With `ospo.self_check`, a pair is kept only if the model's P(yes) to
"Is there a <object> in the video?" falls by more than `margin` from the clean to the masked
video. Needs truth (object boxes); the object words are the world's.
"""

from __future__ import annotations

from mmalign.data.records import sentence_spans
from mmalign.data.video import Video
from mmalign.data.video_ops import apply_ops
from mmalign.world import COLORS, SHAPES

from .facts import Truth
from .inject import InjectContext, Injection, _is_false, make_injection
from .lexicon import find_objects, like_case, plural
from .pair import (Item, PairBuilder, Result, chosen_answers, edit_difficulty, make_record, op_seed, record_rng,
                   sentence_labels, with_truth)


def object_edits(text: str, kind: str, truth: Truth) -> list[tuple[Injection, list[str]]]:
    """Every edit of `kind` on objects that the text mentions and the scene has, with the
    names of the objects to mask."""
    mentions = find_objects(text, "world")
    present = truth.present()
    named = sorted({m.text for m in mentions} & present)
    edits = []
    if kind == "replace":
        for x in named:
            color, shape = x.split(" ")
            for y in [f"{c} {s}" for c in COLORS for s in SHAPES if (c == color) != (s == shape)]:
                if y not in present and y not in {m.text for m in mentions}:
                    subs = [(m.start, m.end, _say(y, text[m.start:m.end], m.text)) for m in mentions if m.text == x]
                    edits.append((make_injection(text, "replace", subs, {"object": x, "new": y}), [x]))
    elif kind == "swap":
        for i, x in enumerate(named):
            for y in named[i + 1:]:
                (cx, sx), (cy, sy) = x.split(" "), y.split(" ")
                if cx == cy:
                    continue
                subs = [(m.start, m.start + len(cx if m.text == x else cy), like_case(cy if m.text == x else cx,
                                                                                       text[m.start:m.end]))
                        for m in mentions if m.text in (x, y)]
                edits.append((make_injection(text, "swap", subs, {"objects": [x, y]}), [x, y]))
    elif kind == "drop":
        sentences = sentence_spans(text)
        for x in named:
            gone = {i for i, (s, e) in enumerate(sentences) for m in mentions if m.text == x and s <= m.start < e}
            if len(gone) < len(sentences):
                edits.append((make_injection(text, "drop", _deletions(text, sentences, gone), {"object": x}), [x]))
    else:
        raise ValueError(f"unknown OSPO kind {kind!r}; known: replace, swap, drop")
    return edits


def _say(name: str, said: str, canonical: str) -> str:
    """`name` in the number and capitalisation of the mention it replaces."""
    return like_case(plural(name) if said.lower() != canonical else name, said)


def _deletions(text: str, sentences, gone: set[int]) -> list[tuple[int, int, str]]:
    """Remove the runs of sentences in `gone` with the whitespace after them (before them for
    a run that ends the text), so the rest reads as it did."""
    subs, i = [], 0
    while i < len(sentences):
        if i not in gone:
            i += 1
            continue
        j = i
        while j + 1 in gone:
            j += 1
        start, end = sentences[i][0], sentences[j][1]
        if j + 1 < len(sentences):
            end = sentences[j + 1][0]
        elif i > 0:
            start = sentences[i - 1][1]
        subs.append((start, end, ""))
        i = j + 1
    return subs


class OspoPairs(PairBuilder):
    name = "ospo"

    def run(self, phase: str, items: list[Item]) -> list[Result]:
        c = self.cfg.ospo
        results = {it.key: Result(it.key) for it in items}
        have = with_truth(items, results, "ospo needs a truth file (object boxes)")
        chosen = chosen_answers(self.cfg, self.backend, have, results)
        pairs = []  # (item, tag, injection, ops, objects)
        for it in have:
            if it.key not in chosen:
                continue
            for kind in c.kinds:
                tag = f"ospo-{kind}"
                ctx = InjectContext("world", it.truth)
                options = [e for e in object_edits(chosen[it.key], kind, it.truth) if _is_false(e[0], ctx) or kind == "drop"]
                if not options:
                    results[it.key].drop(f"no {kind} edit applies")
                    continue
                inj, names = options[int(record_rng(it, tag).integers(len(options)))]
                ids = [o.id for o in it.truth.scene.objects if o.name in names]
                ops = [{"op": "mask_boxes", "boxes": it.truth.boxes(it.video.indices, ids), "fill": list(c.fill)}]
                pairs.append((it, tag, inj, ops, names))
        keep = self._self_check(pairs) if c.self_check else [None] * len(pairs)
        for (it, tag, inj, ops, names), margin in zip(pairs, keep):
            if margin is not None and margin <= c.margin:
                results[it.key].drop("self-check: P(yes) falls by no more than ospo.margin")
                continue
            spans = (inj.chosen, inj.chosen_spans, inj.rejected, inj.rejected_spans)
            meta = {"perturbation": inj.type, "objects": names, **({} if margin is None else {"self_check": round(margin, 4)})}
            results[it.key].records.append(make_record(
                self.cfg, it, tag, *spans, generator="ospo", ops=ops, difficulty=edit_difficulty(*spans), meta=meta,
                labels=sentence_labels(it, inj.chosen, inj.rejected, inj.rejected_spans)))
        return list(results.values())

    def _self_check(self, pairs) -> list[float]:
        """P(yes | clean) - P(yes | object masked) for the first masked object of each pair."""
        yes_prob = self.backend.need("yes_prob", "ospo.self_check")
        asks = []
        for it, tag, inj, ops, names in pairs:
            question = self.cfg.ospo.question.format(names[0])
            masked = apply_ops(it.video.frames, ops, seed=op_seed(f"{it.stem}-{tag}"))
            asks += [(question, it.video), (question, Video(masked, it.video.timestamps, it.video.source_fps,
                                                            it.video.path, it.video.indices))]
        p = yes_prob(asks)
        return [float(p[2 * i] - p[2 * i + 1]) for i in range(len(pairs))]
