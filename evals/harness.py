"""`mmalign eval --harness lmms-eval --tasks videomme,mvbench,...`: the video benchmarks that
lmms-eval already implements (TempCompass, TVBench, Vinoground, Video-MME, MLVU,
LongVideoBench, MVBench, ...), run through lmms-eval's own task code (its prompts, answer
parsing and metrics) with an mmalign model and mmalign's frame sampling (`sampling:`).

We do not port those tasks: lmms-eval keeps their official prompts and scoring up to date. We
give it a model: `MmalignLMM` answers lmms-eval's `generate_until` requests with
`mmalign.models.generate.generate` (greedy, batched), loading each request's videos and
images with `MediaLoader`, as the built-in benchmarks do.

Data comes from local folders only (`data.root`, nothing is downloaded): lmms-eval runs
with HF_HOME=data.root and the Hugging Face hub offline, so a task finds its videos where
lmms-eval itself unpacks them (`<data.root>/<the task's dataset_kwargs.cache_dir>/...`), and
its annotations either in a local dataset folder `<data.root>/<task name>` (a copy of the task's
dataset repository: `huggingface-cli download <dataset_path> --repo-type dataset --local-dir
<data.root>/<task>`) or in the datasets cache under data.root from an earlier online run.

Results land in the same results.json / metrics.md / report.html as the built-ins: one
metric per (task, lmms-eval metric), every sample with its answer, and requests whose media
failed listed and counted (their answer is empty, which lmms-eval scores as its task does).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from tqdm.auto import tqdm

from mmalign.config import ConfigError, to_dict

from .config import EvalConfig, model_specs
from .report import markdown_summary, write_report

INSTALL = "pip install -e '.[lmms]'"


def lmms_model_class():
    """The lmms-eval model class, defined once lmms-eval is importable (an optional extra)."""
    from lmms_eval.api.model import lmms

    class MmalignLMM(lmms):
        def __init__(self, model, processor, cfg: EvalConfig):
            super().__init__()
            self.model, self.processor, self.cfg = model, processor, cfg
            self.media_errors: list[dict] = []

        def prompt(self, context: str, visuals: list, key: str):
            from mmalign.data.video import MediaLoader
            from mmalign.models.generate import Prompt

            media = MediaLoader(self.cfg.sampling)
            try:
                paths = [v for v in visuals if isinstance(v, str)]
                images = [v for v in visuals if not isinstance(v, str)]
                if paths and Path(paths[0]).suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp"):
                    return Prompt(context, images=media.images(paths) + images)
                if len(paths) > 1:
                    raise ValueError(f"{len(paths)} videos in one request (mmalign takes one per prompt)")
                return Prompt(context, video=media.video(paths[0]) if paths else None, images=images)
            except ValueError as e:  # MediaError and bad sampling, as in the built-in runner
                self.media_errors.append({"id": key, "error": f"media: {e}"})
                return None

        def generate_until(self, requests) -> list[str]:
            from mmalign.models.generate import generate

            answers = [""] * len(requests)
            size = self.cfg.generation.batch_size
            for start in tqdm(range(0, len(requests), size), desc="lmms-eval generate", unit="batch"):
                ready = []
                for i in range(start, min(start + size, len(requests))):
                    context, gen_kwargs, doc_to_visual, doc_id, task, split = requests[i].args
                    visuals = doc_to_visual(self.task_dict[task][split][doc_id]) or []
                    p = self.prompt(context, list(visuals), f"{task}/{doc_id}")
                    if p is not None:
                        ready.append((i, p, gen_kwargs))
                # one call per distinct token budget: a task sets its own max_new_tokens
                for budget in dict.fromkeys(self.budget(g) for _, _, g in ready):
                    group = [(i, p, g) for i, p, g in ready if self.budget(g) == budget]
                    texts = generate(self.model, self.processor, [p for _, p, _ in group], max_new_tokens=budget,
                                     do_sample=False, system=self.cfg.prompt.system)
                    for (i, _, g), out in zip(group, texts):
                        answers[i] = cut_at(out[0], g.get("until"))
            return answers

        def budget(self, gen_kwargs: dict) -> int:
            return int(gen_kwargs.get("max_new_tokens") or self.cfg.generation.max_new_tokens)

        def loglikelihood(self, requests):
            raise ConfigError("lmms-eval: mmalign runs generate_until tasks; this task scores log-likelihoods")

        def generate_until_multi_round(self, requests):
            raise ConfigError("lmms-eval: multi-round tasks are not supported by the mmalign bridge")

    return MmalignLMM


def cut_at(text: str, until) -> str:
    """lmms-eval's stop strings: the answer up to the first of them."""
    for stop in ([until] if isinstance(until, str) else until or []):
        if stop:
            text = text.split(stop)[0]
    return text.strip()


def offline_env(root: Path) -> None:
    # Set before lmms-eval's task modules import: several read HF_HOME at import time.
    os.environ["HF_HOME"] = str(root)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    try:
        import datasets.config

        datasets.config.HF_HUB_OFFLINE = True  # the env var is read once, when datasets is imported
    except ImportError:
        pass


def task_requests(manager, tasks: list[str], root: Path) -> list:
    """Task names checked against lmms-eval's registry (with a did-you-mean), each pointed at
    its local dataset folder when data.root has one."""
    known = manager.all_tasks
    out = []
    for task in tasks:
        if task not in known:
            hint = difflib.get_close_matches(task, known, n=1)
            raise ConfigError(f"--tasks: lmms-eval has no task {task!r}" + (f" (did you mean {hint[0]!r}?)" if hint
                                                                           else ""))
        local = root / task
        out.append({"task": task, "dataset_path": str(local)} if local.is_dir() else task)
    return out


def model_result(spec, lm, evaluated: dict) -> dict:
    metrics, categories, items = {}, {}, []
    for task, values in evaluated["results"].items():
        scores = {k.split(",")[0]: v for k, v in values.items()
                  if "," in k and "_stderr" not in k and isinstance(v, (int, float))}
        categories[task] = scores
        metrics.update({f"{task}/{k}": v for k, v in scores.items()})
    for task, samples in (evaluated.get("samples") or {}).items():
        for s in samples:
            resp = s.get("filtered_resps") or s.get("resps")
            while isinstance(resp, list) and resp:
                resp = resp[0]
            items.append({"id": f"{task}/{s.get('doc_id')}", "category": task, "target": s.get("target"),
                          "prediction": resp if isinstance(resp, str) else None})
    errors = lm.media_errors
    return {"name": spec.name, "model": spec.model.path or f"tiny:{spec.model.tiny}", "metrics": metrics,
            "categories": categories, "items": items, "media_errors": errors, "unparsable": [],
            "counts": {"items": len(items), "scored": len(items) - len(errors), "media_errors": len(errors),
                       "unparsable": 0}}


def run_lmms_eval(cfg: EvalConfig, tasks: list[str], load_model_fn=None) -> dict:
    """Every model of `cfg` on lmms-eval's `tasks`; returns what results.json holds."""
    try:
        import lmms_eval  # noqa: F401
    except ImportError:
        raise ConfigError(f"--harness lmms-eval needs lmms-eval, an optional extra: {INSTALL}") from None
    if not cfg.data.root or not Path(cfg.data.root).is_dir():
        raise ConfigError("data.root: --harness lmms-eval reads its datasets and videos from a local folder "
                          f"(lmms-eval's HF_HOME layout), got {cfg.data.root!r}")
    root = Path(cfg.data.root).resolve()
    offline_env(root)
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    from .run import load_model, make_process

    manager = TaskManager()  # indexes every task folder lmms-eval has: built once
    requests = task_requests(manager, tasks, root)
    process = make_process()
    load_model_fn = load_model_fn or load_model
    model_class = lmms_model_class()
    out = Path(cfg.output_dir)
    models = []
    for spec in model_specs(cfg):
        model, processor = load_model_fn(spec, process)
        lm = model_class(model, processor, cfg)
        evaluated = simple_evaluate(model=lm, tasks=requests, batch_size=cfg.generation.batch_size,
                                   limit=cfg.data.limit, log_samples=True, task_manager=manager)
        if evaluated is None:  # not the main process
            continue
        models.append(model_result(spec, lm, evaluated))
    if not process.is_main_process:
        return {}
    headline = list(dict.fromkeys(k for m in models for k in m["metrics"]))
    results = {"benchmark": "lmms-eval: " + ",".join(tasks), "mode": "lmms-eval task code", "backend": None,
               "official": cfg.official, "headline": headline, "unparsable_note": "scored by the task's own code",
               "missing_files": [], "config": to_dict(cfg), "models": models,
               "notes": [f"lmms-eval {lmms_version()}: prompts, parsing and metrics are the tasks' own"]
               + ([f"data.limit={cfg.data.limit}: only the first documents of each task"] if cfg.data.limit else [])}
    write_report(out, results)
    print(markdown_summary(results))
    return results


def lmms_version() -> str:
    from importlib.metadata import version

    return version("lmms_eval")
