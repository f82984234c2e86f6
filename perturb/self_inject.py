"""APASI self-injection (2025; official code davidluciolu/APASI,
llava/prepare_data/data_construct_llm.py and co_graph_construction.py).

chosen = the model's own greedy description of the video. rejected = the same text with
round(rate * n) of its n sentences replaced, never the first (a description with fewer than one
or more than n - 1 to replace is left out); later sentences are likelier, the weight rising
linearly in sqrt(i) from 1 at the first replaceable sentence to 2 at the last, drawn without
replacement. Each replacement opens with a template ("There is a {}") naming a guide object:
one absent from the description but among the top-10 co-occurring with an object that is still
in the kept sentences, co-occurrence counted over the model's own descriptions of all videos
of the run. The same model completes the sentence WITHOUT the video (greedy, <= 64 tokens,
repetition penalty 1.1, cut at the first "."), with the text so far (earlier replacements
included) as its answer prefix. The replace rate is the curriculum knob (difficulty = 1 - rate).

Run as two phases: "describe" (every video), then "pairs" (after the co-occurrence table is
built from every description). Where the official code differs: a guide with no co-occurring
candidate is drawn from the objects absent from the description (theirs may pick a present
one), and with truth, objects in the video are never guides.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from mmalign.data.records import sentence_spans

from .inject import Injection, make_injection
from .lexicon import find_objects
from .pair import (Backend, Item, PairBuilder, Result, chosen_answers, make_record, record_rng, sentence_labels,
                   vocabulary_of)


def replace_count(n_sentences: int, rate: float, skip: int = 1) -> int | None:
    """round(rate * n) (Python's rounding, as the official code), or None when that is 0 or
    leaves fewer than `skip` sentences untouched."""
    k = round(rate * n_sentences)
    return k if 1 <= k <= n_sentences - skip else None


def sentence_weights(n_sentences: int, skip: int = 1, weighted: bool = True) -> np.ndarray:
    """Selection probabilities of sentences skip..n-1: a * sqrt(i) + b with weight 1 at i = skip
    and 2 at i = n - 1 (uniform when weighted is off or only one sentence is eligible)."""
    i = np.arange(skip, n_sentences, dtype=np.float64)
    if weighted and n_sentences > skip + 1:
        a = 1 / (np.sqrt(n_sentences - 1) - np.sqrt(skip))
        w = a * np.sqrt(i) + 1 - np.sqrt(skip) * a
    else:
        w = np.ones_like(i)
    return w / w.sum()


def pick_sentences(n_sentences: int, k: int, rng: np.random.Generator, skip: int = 1, weighted: bool = True) -> list[int]:
    p = sentence_weights(n_sentences, skip, weighted)
    return sorted(int(i) + skip for i in rng.choice(len(p), size=k, replace=False, p=p))


def cooccurrence(descriptions: list[str], vocabulary: str) -> dict[str, list[str]]:
    """object -> the objects mentioned with it in the same description, most often first (ties
    by name), each description counted once (the official counting)."""
    counts: dict[str, Counter] = {}
    for text in descriptions:
        objects = sorted({m.text for m in find_objects(text, vocabulary)})
        for o in objects:
            counts.setdefault(o, Counter()).update(x for x in objects if x != o)
    return {o: [x for x, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))] for o, c in sorted(counts.items())}


def plan_replacement(text: str, rate: float, rng: np.random.Generator, table: dict[str, list[str]], vocabulary: str,
                     templates: list[str], top_k: int = 10, weighted: bool = True,
                     absent_from: set[str] = frozenset()) -> tuple[list[tuple[int, str, str]], str | None]:
    """[(sentence index, guide object, opening)] for one description, or ([], why not)."""
    sentences = sentence_spans(text)
    k = replace_count(len(sentences), rate)
    if k is None:
        return [], f"{len(sentences)} sentence(s): round({rate:g} * n) is 0 or leaves no first sentence"
    picked = pick_sentences(len(sentences), k, rng, weighted=weighted)
    mentions = find_objects(text, vocabulary)
    kept = [m.text for m in mentions if not any(sentences[i][0] <= m.start < sentences[i][1] for i in picked)]
    if not kept:
        return [], "no object left in the kept sentences to guide by"
    described = {m.text for m in mentions} | set(absent_from)
    absent = [o for o in table if o not in described]
    plan = []
    for i in picked:
        template = templates[int(rng.integers(len(templates)))]
        key = kept[int(rng.integers(len(kept)))]
        near = [o for o in table.get(key, []) if o not in described][:top_k]
        pool = near or absent
        if not pool:
            return [], "no absent object to guide by"
        plan.append((i, pool[int(rng.integers(len(pool)))], template))
    return plan, None


def apply_replacements(text: str, replaced: list[tuple[int, str]]) -> Injection:
    """`text` with sentence i replaced by each new sentence (an edit with spans)."""
    sentences = sentence_spans(text)
    return make_injection(text, "self_injection", [(*sentences[i], new) for i, new in replaced])


def guided_sentence(opening: str, continuation: str) -> str:
    """The opening, a space, the continuation up to its first "." (or "!" / "?", so that it
    stays one sentence), and a final "."."""
    cut = re.split(r"[.!?]", continuation, maxsplit=1)[0]
    return f"{opening} {cut.strip()}".strip() + "."


class ApasiPairs(PairBuilder):
    name = "apasi"
    phases = ("describe", "pairs")

    def __init__(self, cfg, backend: Backend):
        super().__init__(cfg, backend)
        self.descriptions: dict[str, str] = {}
        self.tables: dict[str, dict[str, list[str]]] = {}

    def start_phase(self, phase: str, earlier: dict) -> None:
        if phase == "pairs":
            self.descriptions = {k: v["description"] for k, v in earlier.items()}
            self.tables = {}  # per vocabulary, built on first use

    def table(self, vocabulary: str) -> dict[str, list[str]]:
        if vocabulary not in self.tables:
            texts = [self.descriptions[k] for k in sorted(self.descriptions)]
            self.tables[vocabulary] = cooccurrence(texts, vocabulary)
        return self.tables[vocabulary]

    def run(self, phase: str, items: list[Item]) -> list[Result]:
        results = {it.key: Result(it.key) for it in items}
        if phase == "describe":
            for key, text in chosen_answers(self.cfg, self.backend, items, results).items():
                results[key].data = {"description": text}
            return list(results.values())
        c = self.cfg.apasi
        jobs = []  # [item, tag, rate, text, plan, sentences written so far]
        for it in items:
            text = self.descriptions.get(it.key)
            if text is None:
                results[it.key].skipped = "no description (the describe phase skipped this video)"
                continue
            vocabulary = vocabulary_of(self.cfg, it)
            for rate in c.replace_rates:
                tag = f"apasi-r{rate:g}"
                plan, why = plan_replacement(text, rate, record_rng(it, tag), self.table(vocabulary), vocabulary,
                                             c.templates, c.top_k, c.weighted,
                                             it.truth.present() if it.truth else frozenset())
                if why:
                    results[it.key].drop(why)
                else:
                    jobs.append([it, tag, rate, text, plan, []])
        self._complete(jobs)
        for it, tag, rate, text, plan, written in jobs:
            inj = apply_replacements(text, [(i, s) for (i, _, _), s in zip(plan, written)])
            spans = (inj.chosen, inj.chosen_spans, inj.rejected, inj.rejected_spans)
            meta = {"perturbation": "self_injection", "replace_rate": rate, "replaced": [i for i, _, _ in plan],
                    "guide_objects": [o for _, o, _ in plan]}
            results[it.key].records.append(make_record(
                self.cfg, it, tag, *spans, generator="apasi", difficulty=1.0 - rate, meta=meta,
                labels=sentence_labels(it, inj.chosen, inj.rejected, inj.rejected_spans)))
        return list(results.values())

    def _complete(self, jobs: list[list]) -> None:
        """Round r completes every job's r-th replacement in one batch; its prefix is the text
        before that sentence with the earlier replacements already in."""
        c = self.cfg.apasi
        rounds = max((len(j[4]) for j in jobs), default=0)
        for r in range(rounds):
            active = [j for j in jobs if len(j[4]) > r]
            prefixes = []
            for it, tag, rate, text, plan, written in active:
                sentence, obj, template = plan[r]
                done = apply_replacements(text, [(i, s) for (i, _, _), s in zip(plan, written)])
                start = sentence_spans(done.rejected)[sentence][0]
                prefixes.append(done.rejected[:start] + template.format(obj))
            complete = self.backend.need("complete", "generator apasi")
            continuations = complete([(self.cfg.prompt, p) for p in prefixes], max_new_tokens=c.max_new_tokens,
                                     repetition_penalty=c.repetition_penalty)
            for job, cont in zip(active, continuations):
                _, obj, template = job[4][r]
                job[5].append(guided_sentence(template.format(obj), cont))
