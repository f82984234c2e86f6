"""`evaluate(cfg)`: one benchmark, one or several models, read top to bottom.

load the benchmark's items (official files) -> for each model: generate what is missing
(runner.py, resumable, sharded) -> judge every answer and aggregate with the official rules
-> write results.json, metrics.md and report.html (report.py) and print the table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from mmalign.config import ConfigError, to_dict
from mmalign.io import check_output_folder, read_user_text

from .benchmarks import REGISTRY, Benchmark, BenchmarkFilesMissing, Item
from .config import EvalConfig, ModelSpec, ScoreConfig, model_specs
from .report import markdown_summary, write_report
from .runner import check_settings, generate_predictions, merged_predictions


def evaluate(cfg: EvalConfig, overwrite: bool = False, process=None, generate_fn: Callable | None = None,
             load_model_fn: Callable | None = None, predictions: str | None = None) -> dict:
    """Run and score every model of `cfg`; returns what results.json holds (main process).
    `predictions`: score that file (`score_file`), instead of the config's `model`, or beside
    the `models` it lists (--models): a published predictions file next to your checkpoints.
    `generate_fn` / `load_model_fn(spec, process)` replace generate / load_backbone (tests)."""
    bench = REGISTRY[cfg.benchmark]
    load_model_fn = load_model_fn or load_model
    process = process or make_process()
    out = Path(cfg.output_dir)
    check_output_folder(out, "output_dir")
    if process.is_main_process and bench.prepare is not None:
        bench.prepare(cfg)
    process.wait_for_everyone()
    try:
        loaded = bench.load(cfg)
    except ConfigError:
        raise
    except (TypeError, AttributeError, ValueError) as e:
        raise ConfigError(f"{cfg.benchmark}: an annotation file has a field of the wrong type or form "
                          f"({type(e).__name__}: {e})") from None
    if cfg.official and loaded.missing:
        raise BenchmarkFilesMissing(f"official: true but {cfg.benchmark} files are missing: "
                                    + "; ".join(loaded.missing))
    if cfg.data.limit is not None:
        loaded.notes.append(f"data.limit={cfg.data.limit}: only the first items of each subset were evaluated")

    models = []
    if predictions is not None:
        models.append(score_file(bench, cfg, loaded.items, predictions))
        loaded.notes += models[-1].pop("notes")
    # --predictions with --models: the file's row beside theirs; it alone names no model to run
    specs = model_specs(cfg) if predictions is None or cfg.models else []
    if models and models[0]["name"] in {s.name for s in specs}:
        raise ConfigError(f"--predictions {predictions}: its row would be named {models[0]['name']!r}, as a model of "
                          "--models is; rename one of them")
    from mmalign.models.backbone import check_checkpoint, check_runtime

    for spec in specs:  # every model checked before the first one generates anything
        try:
            check_runtime(spec.model)
            if spec.model.path:
                check_checkpoint(spec.model.path, spec.model.trust_remote_code, serves="backbone")
        except ConfigError as e:
            raise ConfigError(f"model {spec.name!r}: {e}") from None
    # Loaded to score, after every answer was generated: checked now. The judge is a text chat
    # model (AutoModelForCausalLM); the embedder only needs to be a folder (SimCSE ships pickle weights).
    if cfg.score.judge_model:
        check_checkpoint(cfg.score.judge_model, False, "score.judge_model", serves="chat")
    path = cfg.score.embedding_model
    if path and not (Path(path) / "config.json").is_file():
        raise ConfigError(f"score.embedding_model: {path}: not a model folder (a local folder with config.json)")
    for spec in specs:
        model_out = out / spec.name
        if process.is_main_process:
            check_settings(model_out, run_settings(cfg, spec), overwrite)
        process.wait_for_everyone()
        generate_predictions(loaded.items, model_out, lambda spec=spec: load_model_fn(spec, process), cfg, process,
                             generate_fn)
        process.wait_for_everyone()
        if process.is_main_process:
            scored = score_items(bench, cfg.score, loaded.items, merged_predictions(loaded.items, model_out))
            models.append({"name": spec.name, "model": spec.model.path or f"tiny:{spec.model.tiny}", **scored})

    if not process.is_main_process:
        return {}
    results = {"benchmark": cfg.benchmark, "mode": cfg.score.mode, "backend": cfg.score.backend,
               "official": cfg.official, "headline": list(bench.headline),
               "unparsable_note": unparsable_note(bench, cfg.score.mode),
               "missing_files": loaded.missing, "notes": loaded.notes, "config": to_dict(cfg), "models": models}
    write_report(out, results)
    print(markdown_summary(results))
    return results


def unparsable_note(bench: Benchmark, mode: str) -> str:
    note = bench.unparsable_note
    return note.get(mode, "counted as wrong") if isinstance(note, dict) else note


def make_process():
    import torch
    from accelerate import PartialState

    # Without a GPU, accelerate only joins the process group (gloo) when told it runs on the CPU.
    return PartialState(cpu=not torch.cuda.is_available())


def load_model(spec: ModelSpec, process):
    from mmalign.models.backbone import load_backbone

    model, processor = load_backbone(spec.model)
    return model.to(process.device).eval(), processor


def run_settings(cfg: EvalConfig, spec: ModelSpec) -> dict:
    """What changes answers without changing prompts: a resumed run must match it."""
    from mmalign.models.backbone import weights_stamp

    d = cfg.sampling
    return {"benchmark": cfg.benchmark, "model": spec.model.path or f"tiny:{spec.model.tiny}",
            "model_weights": weights_stamp(spec.model.path),
            "dtype": spec.model.dtype, "max_new_tokens": cfg.generation.max_new_tokens, "system": cfg.prompt.system,
            "num_frames": d.num_frames, "fps": d.fps, "max_frames": d.max_frames, "max_pixels": d.max_pixels}


def score_items(bench: Benchmark, score: ScoreConfig, items: list[Item], predictions: list[dict]) -> dict:
    """Judge each prediction ({prediction, error} rows in item order) and aggregate."""
    rows = [judged_row(bench, score, item, pred) for item, pred in zip(items, predictions)]
    scored = [r for r in rows if r["error"] is None]
    agg = bench.aggregate(scored, score) if scored else {"metrics": {}, "categories": {}}
    media_errors = [{"id": r["id"], "error": r["error"]} for r in rows if r["error"] is not None]
    unparsable = [{"id": r["id"], "prediction": r["prediction"]} for r in scored if r["unparsable"]]
    return {"metrics": agg["metrics"], "categories": agg["categories"],
            "counts": {"items": len(rows), "scored": len(scored), "media_errors": len(media_errors),
                       "unparsable": len(unparsable)},
            "media_errors": media_errors, "unparsable": unparsable, "items": rows}


def read_prediction_file(path: str, bench: Benchmark | None = None, items: list[Item] = ()) -> dict[str, object]:
    """id -> prediction from the benchmark's official predictions file (its `read_predictions`,
    or its `read_answer_rows` for a file of rows without ids, such as POPE's), our
    predictions.jsonl ({id, prediction} per line), a JSON object {id: prediction}, or a JSON
    list of {id, prediction | pred | answer | response} (the shape most official inference
    scripts write). A bad line is named by file:line, with the shape of a good one (an id of
    the benchmark's `items`)."""
    text = read_user_text(path, "a predictions file")
    shape = json.dumps({"id": items[0].id, "prediction": "..."}) if items else "{id, prediction}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) and ("id" in data or official_rows(bench, [(":1", data)], path, items) is not None):
        data = None  # one line of rows (a one-item predictions.jsonl, POPE's answer/example.json), not {id: prediction}
    if data is None:
        lines = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    lines.append((f":{lineno}", json.loads(line)))
                except json.JSONDecodeError:
                    raise ConfigError(f"{path}:{lineno}: not a prediction row like {shape} (JSONDecodeError)") from None
        official = official_rows(bench, lines, path, items)
        if official is not None:
            return official
        rows = []
        for where, row in lines:
            try:
                rows.append((str(row["id"]), row.get("prediction"), where))
            except (KeyError, TypeError, AttributeError) as e:
                raise ConfigError(f"{path}{where}: not a prediction row like {shape} ({type(e).__name__}"
                                  + (f": no {e}" if isinstance(e, KeyError) else "") + ")") from None
        return distinct_answers(rows, path)
    try:
        official = official_predictions(bench, data, path)
        if official is None and isinstance(data, list):
            official = official_rows(bench, [(f"[{i}]", r) for i, r in enumerate(data)], path, items)
        if official is not None:
            return official
        rows = [(str(k), v, None) for k, v in data.items()] if isinstance(data, dict) else None
        if isinstance(data, list):
            keys = ("prediction", "pred", "answer", "response")
            rows = [(str(r["id"]), next(r[k] for k in keys if k in r), f"[{i}]") for i, r in enumerate(data)]
    except (KeyError, StopIteration, TypeError, AttributeError) as e:
        raise ConfigError(f"{path}: a list entry lacks 'id' or 'prediction' ({type(e).__name__})") from None
    if rows is None:
        raise ConfigError(f"{path}: expected JSON lines, an object or a list of predictions")
    return distinct_answers(rows, path)


def official_rows(bench: Benchmark | None, rows: list[tuple[str, object]], path: str, items: list[Item]) -> dict | None:
    if bench is None or bench.read_answer_rows is None:
        return None
    answers = bench.read_answer_rows(rows, path, items)
    return None if answers is None else distinct_answers(answers, path)


def distinct_answers(rows: list[tuple[str, object, str | None]], path: str) -> dict[str, object]:
    """id -> prediction of (id, prediction, where: ":<line>" or "[<list index>]") rows. An id
    given twice with two answers is refused: scoring one of them (the last, as dict() did)
    would be a guess."""
    out, first = {}, {}
    for item_id, prediction, where in rows:
        if item_id in out and out[item_id] != prediction:
            raise ConfigError(f"{path}{where}: id {item_id!r} again, answered otherwise at {path}{first[item_id]}: "
                              "which answer to score?")
        out[item_id] = prediction
        first.setdefault(item_id, where)
    return out


def official_predictions(bench: Benchmark | None, data, path: str) -> dict | None:
    if bench is None or bench.read_predictions is None:
        return None
    try:
        return bench.read_predictions(data, path)
    except (KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path}: looks like {bench.name}'s official predictions file but an entry lacks "
                          f"{e} ({type(e).__name__})") from None


def score_file(bench: Benchmark, cfg: EvalConfig, items: list[Item], path: str) -> dict:
    """Score an existing predictions file: no model is loaded. Items the file lacks are listed
    and counted, never guessed."""
    preds = read_prediction_file(path, bench, items)
    present = [it for it in items if it.id in preds]
    missing = [it.id for it in items if it.id not in preds]
    extra = len(set(preds) - {it.id for it in items})
    scored = score_items(bench, cfg.score, present, [{"prediction": preds[it.id], "error": None} for it in present])
    scored["counts"]["missing_predictions"] = len(missing)
    notes = []
    if missing and extra:
        notes.append(f"{path} lacks {len(missing)} of the {len(items)} items and names {extra} that the annotation "
                     "files do not have: it was likely made on another version of the benchmark's files"
                     + (" (LLaVA-1.5's published POPE answers line up only with POPE commit e3e3926, whose random "
                        "split has 2,910 questions, not 3,000)" if bench.name == "pope" else ""))
    return {"name": Path(path).stem, "model": f"predictions:{path}", **scored, "missing_predictions": missing,
            "notes": notes}


def judged_row(bench: Benchmark, score: ScoreConfig, item: Item, pred: dict) -> dict:
    """The results.json row: the item, the answer, and what the official rule made of it.
    Items whose media failed have no answer and are left out of the metrics (listed instead)."""
    row = {"id": item.id, "category": item.category, "group": item.group, "prompt": item.prompt,
           "media": item.media, "target": item.target, "meta": item.meta,
           "prediction": pred["prediction"], "error": pred.get("error")}
    if row["error"] is not None:
        return {**row, "parsed": None, "correct": None, "unparsable": False}
    if not isinstance(pred["prediction"], bench.answer_types):
        # null or not text: the benchmark's own rule reads it as an empty answer (EventHallusion's
        # eval.py: unmatched; POPE's: no "no" word, so "yes"), and it is listed as unparsable.
        j = bench.judge(item, "", score)
        return {**row, "parsed": j.parsed, "correct": bool(j.correct), "unparsable": True, **j.extra}
    j = bench.judge(item, pred["prediction"], score)
    return {**row, "parsed": j.parsed, "correct": bool(j.correct), "unparsable": j.unparsable, **j.extra}
