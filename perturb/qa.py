"""generator: rrpo_qa — RRPO's self-alignment recipe on video questions with known answers.

RRPO (Sarkar & Etemad 2025; pritamqu/RRPO, README and docs/DATA.md) makes its pairs so:

1. start from video questions with known answers (yes/no, multiple choice, short answers,
   open descriptions);
2. the model being aligned answers each on a PERTURBED video (25-50% of the frame area masked
   plus a local temporal shuffle: `rrpo.mask_area`, `rrpo.shuffle_window`);
3. only the questions it gets WRONG are kept (`judge`);
4. the rejected response is the ground truth rewritten minimally so that it carries the
   model's wrong concepts (`rewriter`); the chosen response is the ground truth; the pair
   differs only in the marked spans. Short answers need no rewrite: the wrong answer is the
   rejected response.

Question sources (`rrpo_qa.questions`): "world" builds yes/no, multiple-choice, short and open
questions from the synthetic world's exact truth; a path names a user's JSONL of
{video, prompt, answer, type?, options?} records (`video` relative to the --videos folder).
Judges: exact match after normalisation for yes/no, option letters and short answers; open
answers by the world's facts (`rules`) or a local HF causal LM (`model`). Rewriters: the
world's facts (exact, `facts`) or the same kind of local LM with RRPO's two-turn prompt (list
the key differences, then rewrite the truth with them). A rewrite changing more than
`rrpo.max_changed_fraction` of the two texts is dropped and counted. The report's `filtered`
counts every question that made no pair, by stage: answered right, judge, rewrite, filter.
"""

from __future__ import annotations

import difflib
import json
import os
import re

import numpy as np

from mmalign.config import ConfigError
from mmalign.data.records import sentence_spans
from mmalign.io import broken_array, json_array_document, read_user_text
from mmalign.world import COLORS, SHAPES
from mmalign.world.text import ANSWER_CHOICES, benchmark_items, caption_sentences, motion_phrase, qa_pairs

from .diff import changed_fraction, diff_spans
from .facts import check_sentence
from .lexicon import NUMBER_WORDS, find_objects
from .pair import Item, PairBuilder, Result, make_record, record_rng
from .video import perturbed, rrpo_ops

QUESTION_TYPES = ("yes_no", "mcq", "short", "open")
YES_NO_SUFFIX = "\nAnswer the question using 'yes' or 'no'."  # the synthetic benchmark's own
MCQ_SUFFIX = "\nAnswer with the option's letter."
OPEN_PROMPT = "Describe what happens in the video."
LETTERS = "ABCDEF"

# Drop reasons, in pipeline order (the report's `filtered` counts them).
RIGHT = "1 answered right on the perturbed video"
NO_CONCEPT = "2 wrong, but the rewrite found no concept to carry"
NOT_MINIMAL = "3 rewrite not a minimal edit (rrpo.max_changed_fraction)"
UNCHANGED = "3 rewrite equals the ground truth"


# ---------------------------------------------------------------- questions

def world_questions(scene, types, rng: np.random.Generator) -> list[dict]:
    """{type, prompt, answer, kind} questions from the scene's truth."""
    out = []
    if "yes_no" in types:
        for item in benchmark_items(scene):
            for role in ("basic", "hallucination"):
                q = item[role]
                out.append({"type": "yes_no", "kind": item["type"], "prompt": q["question"] + YES_NO_SUFFIX,
                            "answer": q["answer"]})
    for qa in qa_pairs(scene):
        if "short" in types:
            out.append({"type": "short", "kind": qa["kind"], "prompt": qa["question"], "answer": qa["answer"]})
        if "mcq" in types and qa["kind"] in ("color", "shape", "direction", "count"):
            wrong = [c for c in ANSWER_CHOICES[qa["kind"]] if c != qa["answer"]]
            options = [qa["answer"], *rng.choice(wrong, size=min(3, len(wrong)), replace=False).tolist()]
            rng.shuffle(options)
            out.append({"type": "mcq", "kind": qa["kind"], "prompt": mcq_prompt(qa["question"], options),
                        "answer": LETTERS[options.index(qa["answer"])], "options": options})
    if "open" in types:
        out.append({"type": "open", "kind": "caption", "prompt": OPEN_PROMPT, "answer": " ".join(caption_sentences(scene))})
    return out


def mcq_prompt(question: str, options: list[str]) -> str:
    """The question, its options lettered A, B, ..., and the instruction to answer with the letter."""
    return question + "\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options)) + MCQ_SUFFIX


def option_letter(text: str, options: list[str] | None) -> str | None:
    """The option letter a text gives: the option whose text it is, or a letter standing alone
    at its start ("B", "(b)", "B. red"); None when it gives neither. "a red circle" is no letter:
    the article is not option A."""
    norm = normalise(text)
    named = [i for i, o in enumerate(options or []) if normalise(o) == norm]
    if named:
        return LETTERS[named[0]]
    m = re.match(rf"\s*\(?([{LETTERS}{LETTERS.lower()}])(?:[).:,]|\s*$)", text)
    if m and (not options or LETTERS.index(m.group(1).upper()) < len(options)):
        return m.group(1).upper()
    return None


def mcq_letter(answer: str, options: list[str] | None) -> str:
    """A multiple-choice truth answer as its option letter; ValueError when it gives none."""
    letter = option_letter(answer, options)
    if letter is None:
        raise ValueError(f"answer {answer!r} is neither one of its options nor an option letter")
    return letter


def _stem(path: str) -> str:
    return os.path.splitext(path)[0]


QA_FIELDS = ("video", "prompt", "question", "answer", "type", "options", "id", "kind")
OPTION_ALIASES = ("candidates", "choices")  # MVBench's name, and others'
SEGMENT_FIELDS = ("start", "end")  # MVBench: the question is about this part of the video only


def read_questions(path: str) -> tuple[dict[str, list[dict]], list[str]]:
    """A user's QA file, read once: one {video, prompt (or question), answer, type?, options?}
    per line, or one JSON array of them (MVBench's files); `video` is a path relative to the
    --videos folder, with or without its extension. Keyed by that path without its extension.
    An integer answer is its digits, true / false are yes / no. type defaults to yes_no / mcq /
    short / open from the answer's form. `options` (or `candidates`, `choices`; 2-6 strings) are
    shown lettered after the prompt, as the world's multiple-choice questions are; the answer is
    an option's text or its letter. Also returns the other fields the file has, which are not
    read (the run's report names them); a near-miss of a field name is refused instead."""
    text = read_user_text(path, "a QA file")
    try:
        items = json_array_document(text)
    except json.JSONDecodeError as e:
        raise ConfigError(broken_array(path, e)) from None
    if items is None:
        items = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    by_stem, unread = {}, {}
    for lineno, line in items:
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise TypeError(f"a JSON object per line, got {type(row).__name__}")
            video, prompt, answer = row["video"], row.get("prompt", row.get("question")), row["answer"]
            # A count is often an integer and a yes/no answer a boolean once a table has been
            # through pandas or a JSON export; each has one text form.
            if isinstance(answer, bool):
                answer = "yes" if answer else "no"
            elif isinstance(answer, int):
                answer = str(answer)
            if not (isinstance(video, str) and isinstance(prompt, str) and isinstance(answer, str)):
                raise TypeError("video and prompt must be strings, answer a string, an integer or true/false")
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{where}: not a QA record ({type(e).__name__}: {e})") from None
        segment = [k for k in SEGMENT_FIELDS if k in row]
        if segment:
            raise ConfigError(f"{where}: '{segment[0]}': the question is about a part of its video, but questions "
                              "are asked on the whole video; cut that part into its own file")
        named = [k for k in ("options", *OPTION_ALIASES) if k in row]
        if len(named) > 1:
            raise ConfigError(f"{where}: both '{named[0]}' and '{named[1]}': give the options once")
        for key in row:
            if key in QA_FIELDS or key in OPTION_ALIASES:
                continue
            near = [f for f in QA_FIELDS + OPTION_ALIASES
                    if not key.startswith(f + "_") and difflib.SequenceMatcher(None, key, f).ratio() >= 0.85]
            if near:
                raise ConfigError(f"{where}: unknown field '{key}' (did you mean '{near[0]}'?)")
            unread[key] = unread.get(key, 0) + 1
        options = row[named[0]] if named else None
        kind = row.get("type") or infer_type(answer, options)
        if kind not in QUESTION_TYPES:
            raise ConfigError(f"{where}: type {kind!r} is not one of {list(QUESTION_TYPES)}")
        if kind == "mcq":
            # The options were never shown, and the answer's first character was taken for its
            # letter: "a red circle" read as option A, and so did a reply that began with "a".
            try:
                if options is not None and not (isinstance(options, list) and 2 <= len(options) <= len(LETTERS)
                                                and all(isinstance(o, str) for o in options)):
                    raise ValueError(f"options must be 2-{len(LETTERS)} strings, got {options!r}")
                answer = mcq_letter(answer, options)
            except ValueError as e:
                raise ConfigError(f"{where}: multiple choice: {e}") from None
            if options:
                prompt = mcq_prompt(prompt, options)
        by_stem.setdefault(_stem(video), []).append({"type": kind, "kind": row.get("kind", kind), "prompt": prompt,
                                                     "answer": answer, "options": options,
                                                     "id": str(row.get("id", f"l{lineno}"))})
    return by_stem, [f"{k} ({n})" for k, n in unread.items()]


def infer_type(answer: str, options) -> str:
    a = normalise(answer)
    if a in ("yes", "no"):
        return "yes_no"
    if options or re.fullmatch(f"[{LETTERS.lower()}]", a):
        return "mcq"
    return "short" if len(a.split()) <= 3 else "open"


# ---------------------------------------------------------------- judging

def normalise(text: str) -> str:
    """Lower case, punctuation dropped, number words as digits, whitespace collapsed."""
    words = re.sub(r"[^\w\s]", " ", str(text).lower()).split()
    numbers = {w: str(i) for i, w in enumerate(NUMBER_WORDS)}
    return " ".join(numbers.get(w, w) for w in words)


def short_form(text: str, kind: str, options: list[str] | None = None) -> str:
    """The answer a short-form question reads from a model's reply: its first yes/no word,
    its option letter ("B", "(b)", "B. red"; or the letter of the option whose text it is),
    or the whole normalised text. A reply "a red circle" is not option A: the letter must
    stand alone."""
    norm = normalise(text)
    if kind == "yes_no":
        first = norm.split()[:1]
        return first[0] if first and first[0] in ("yes", "no") else norm
    if kind == "mcq":
        return option_letter(str(text), options) or norm
    return norm


def is_right(question: dict, reply: str) -> bool:
    if question["type"] == "mcq":
        return short_form(reply, "mcq", question.get("options")) == question["answer"].strip().upper()[:1]
    return short_form(reply, question["type"]) == normalise(question["answer"])


def wrong_concepts(reply: str, scene) -> list[dict]:
    """What a caption states that the scene contradicts, by the world's facts: objects named
    that are not there, and motions wrong for objects that are."""
    found = []
    present = {o.name: o for o in scene.objects}
    for m in find_objects(reply, "world"):
        if m.text not in present and {"kind": "object", "name": m.text} not in found:
            found.append({"kind": "object", "name": m.text})
    for s, e in sentence_spans(reply):
        sentence = reply[s:e]
        if check_sentence(sentence, scene) != 0:
            continue
        m = re.search(rf"\b({'|'.join(COLORS)}) ({'|'.join(SHAPES)})\b.*?\b(moves (left|right|up|down)|stays still)",
                      sentence.lower())
        if m and f"{m.group(1)} {m.group(2)}" in present:
            direction = m.group(4) or "static"
            found.append({"kind": "motion", "name": f"{m.group(1)} {m.group(2)}", "direction": direction})
    return found


# ---------------------------------------------------------------- rewriting with the facts

def rewrite_with_facts(truth: str, concepts: list[dict], scene) -> str:
    """The truth caption carrying the model's wrong concepts, changed as little as possible: a
    wrong motion replaces that object's motion phrase; a hallucinated object takes the place
    of a present one that shares its colour or shape (else the first one not yet replaced)."""
    text = truth
    present = sorted(scene.objects, key=lambda o: o.id)
    replaced = set()
    for c in concepts:
        if c["kind"] == "motion":
            obj = next(o for o in present if o.name == c["name"])
            old, new = motion_phrase(obj.direction), motion_phrase(c["direction"])
            text = re.sub(rf"(\b{obj.name} ){re.escape(old)}", rf"\g<1>{new}", text)
    for c in concepts:
        if c["kind"] != "object":
            continue
        color, shape = c["name"].split()
        near = [o for o in present if o.name not in replaced and (o.color == color or o.shape == shape)]
        pool = near or [o for o in present if o.name not in replaced]
        if not pool:
            continue
        target = pool[0]
        replaced.add(target.name)
        text = re.sub(rf"\b{target.name}\b", c["name"], text)
    return text


# ---------------------------------------------------------------- the builder

class RrpoQaPairs(PairBuilder):
    name = "rrpo_qa"

    def __init__(self, cfg, backend):
        super().__init__(cfg, backend)
        self._judge = self._rewriter = None  # local LMs, loaded when first asked
        # The QA file, read whole before any model is loaded: a bad line stops the run here.
        q = cfg.rrpo_qa.questions
        self._user_questions, self._unread_fields = (None, []) if q == "world" else read_questions(q)

    def questions(self, item: Item) -> list[dict]:
        c = self.cfg.rrpo_qa
        if c.questions == "world":
            if item.truth is None:
                return []
            qs = world_questions(item.truth.scene, c.types, record_rng(item, "questions"))
            for i, q in enumerate(qs):
                q["id"] = f"q{i}"
        else:
            qs = self._user_questions.get(_stem(item.key), [])
        if c.per_video is not None and len(qs) > c.per_video:
            pick = sorted(record_rng(item, "pick").choice(len(qs), size=c.per_video, replace=False).tolist())
            qs = [qs[i] for i in pick]
        return qs

    def notes(self, keys: list[str]) -> list[str]:
        """QA lines whose video is not under --videos (a typo, another folder): never asked; and
        the QA file's fields that are not read."""
        if self._user_questions is None:
            return []
        unused = sorted(set(self._user_questions) - {_stem(k) for k in keys})
        n = sum(len(self._user_questions[s]) for s in unused)
        notes = [f"{n} question(s) of {self.cfg.rrpo_qa.questions} name a video not under --videos, so none was "
                 f"asked: {', '.join(unused[:3])}{', ...' if len(unused) > 3 else ''}"] if unused else []
        if self._unread_fields:
            notes.append(f"fields of {self.cfg.rrpo_qa.questions} that are not read (lines): "
                         + ", ".join(self._unread_fields))
        return notes

    def run(self, phase: str, items: list[Item]) -> list[Result]:
        c, r = self.cfg.rrpo_qa, self.cfg.rrpo
        results = {it.key: Result(it.key) for it in items}
        jobs = []
        for it in items:
            qs = self.questions(it)
            if not qs:
                results[it.key].skipped = ("rrpo_qa.questions: world, but the video has no truth file (name a QA "
                                           "file of {video, prompt, answer} lines: rrpo_qa.questions=qa.jsonl)"
                                           if c.questions == "world" else f"no question in {c.questions} names it")
                continue
            # One perturbed clip per video, as RRPO perturbs each video once for its questions.
            tag = "rrpo_qa"
            ops, area = rrpo_ops(r, it, tag)
            clip = perturbed(it.video, ops, f"{it.stem}-{tag}")
            jobs += [(it, q, ops, area, clip) for q in qs]
        if any(q["type"] == "open" and self._judge_kind(it) == "model" for it, q, *_ in jobs):
            from .text_model import need_text_model

            need_text_model(c.judge_model)  # before the model answers a batch whose open answers none could judge
        replies = self.backend.need("generate", "generator rrpo_qa")([(q["prompt"], clip) for _, q, *_, clip in jobs])
        wrong = []
        for (it, q, ops, area, _), reply in zip(jobs, replies):
            if self._right(it, q, reply):
                results[it.key].drop(RIGHT)
            else:
                wrong.append((it, q, ops, area, reply))
        rejected = self._rewrite(wrong)
        for (it, q, ops, area, reply), (rej, why) in zip(wrong, rejected):
            self._add(results[it.key], it, q, ops, area, reply, rej, why)
        return list(results.values())

    # -- the judge: is the model's reply right?
    def _right(self, it: Item, q: dict, reply: str) -> bool:
        if q["type"] != "open":
            return is_right(q, reply)
        if self._judge_kind(it) == "rules":
            return not wrong_concepts(reply, it.truth.scene)
        return self.judge_model().agrees([(q["prompt"], q["answer"], reply)])[0]

    def _judge_kind(self, it: Item) -> str:
        j = self.cfg.rrpo_qa.judge
        return ("rules" if it.truth is not None else "model") if j == "auto" else j

    def _rewriter_kind(self, it: Item) -> str:
        w = self.cfg.rrpo_qa.rewriter
        return ("facts" if it.truth is not None else "model") if w == "auto" else w

    # -- the rewriter: the ground truth carrying the wrong concepts
    def _rewrite(self, wrong: list[tuple]) -> list[tuple[str | None, str | None]]:
        out: list = [None] * len(wrong)
        to_model = []
        for i, (it, q, _, _, reply) in enumerate(wrong):
            if q["type"] != "open":  # short answers need no rewrite: the wrong answer is the rejected response
                out[i] = (self._short_rejected(q, reply), None)
            elif self._rewriter_kind(it) == "facts":
                concepts = wrong_concepts(reply, it.truth.scene)
                out[i] = (rewrite_with_facts(q["answer"], concepts, it.truth.scene), None) if concepts \
                    else (None, NO_CONCEPT)
            else:
                to_model.append(i)
        if to_model:
            texts = self.rewriter_model().rewrite([(wrong[i][1]["answer"], wrong[i][4]) for i in to_model])
            for i, text in zip(to_model, texts):
                out[i] = (text, None) if text.strip() else (None, NO_CONCEPT)
        return out

    @staticmethod
    def _short_rejected(q: dict, reply: str) -> str:
        """The model's short answer as the rejected response, in the chosen answer's form where
        it reads one (yes / no, an option letter), else its reply as written."""
        form = short_form(reply, q["type"], q.get("options"))
        if q["type"] == "yes_no" and form in ("yes", "no"):
            return form
        if q["type"] == "mcq" and len(form) == 1:
            return form
        return reply.strip() or "(no answer)"

    def _add(self, result: Result, it: Item, q: dict, ops, area, reply: str, rejected: str | None,
             why: str | None) -> None:
        chosen = q["answer"]
        if rejected is None:
            result.drop(why)
            return
        if rejected.strip() == chosen.strip():
            result.drop(UNCHANGED)
            return
        c_spans, r_spans = diff_spans(chosen, rejected)
        fraction = changed_fraction(chosen, c_spans, rejected, r_spans)
        if q["type"] == "open" and fraction > self.cfg.rrpo.max_changed_fraction:
            result.drop(NOT_MINIMAL)
            return
        meta = {"question_type": q["type"], "question_kind": q["kind"], "perturbation": "mask+local_shuffle",
                "mask_area": area, "shuffle_window": self.cfg.rrpo.shuffle_window, "model_answer": reply,
                "judge": "exact" if q["type"] != "open" else self._judge_kind(it),
                "rewriter": "none" if q["type"] != "open" else self._rewriter_kind(it),
                "changed_fraction": round(fraction, 4), "question_source": self.cfg.rrpo_qa.questions}
        result.records.append(make_record(self.cfg, it, f"rrpo_qa-{q['id']}", chosen, c_spans, rejected, r_spans,
                                          generator=self.name, ops=ops, difficulty=1.0 - fraction, meta=meta,
                                          prompt=q["prompt"]))

    def judge_model(self):
        if self._judge is None:
            from .text_model import TextModel

            self._judge = TextModel(self.cfg.rrpo_qa.judge_model, self.cfg.rrpo_qa.text_max_new_tokens,
                                    self.cfg.seed, self.cfg.model.trust_remote_code)
        return self._judge

    def rewriter_model(self):
        if self._rewriter is None:
            from .text_model import TextModel

            c = self.cfg.rrpo_qa
            path = c.rewriter_model or c.judge_model
            self._rewriter = (self.judge_model() if path == c.judge_model else
                              TextModel(path, c.text_max_new_tokens, self.cfg.seed, self.cfg.model.trust_remote_code))
        return self._rewriter

