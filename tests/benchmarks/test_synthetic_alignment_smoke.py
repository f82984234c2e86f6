"""benchmarks/synthetic_alignment.py: the scoring helpers against hand counts, and the
`--quick` path end to end (tiny sizes, one seed) writing the json / md / png."""

import importlib.util
import json
import numpy as np
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _scenes(world: Path) -> set[str]:
    """The objects of each scene of a built world, to tell two worlds' scenes apart."""
    return {json.dumps(json.loads(t.read_text())["scene"]["objects"]) for t in (world / "truth").glob("*.json")}


def _module():
    spec = importlib.util.spec_from_file_location("synthetic_alignment", ROOT / "benchmarks/synthetic_alignment.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_object_precision_counts_mentions(tmp_path):
    from mmalign.world import build_world

    sa = _module()
    world = tmp_path / "world"
    build_world(world, n_videos=4, seed=0, show_progress=False)
    truth = json.loads((world / "truth/vid0000.json").read_text())
    present = sorted({f"{o['color']} {o['shape']}" for o in truth["scene"]["objects"]})
    absent = next(f"{c} {s}" for c in ("red", "green", "blue", "yellow", "white", "purple", "orange", "cyan")
                  for s in ("circle", "square", "triangle") if f"{c} {s}" not in present)
    text = f"A {present[0]} moves. A {absent} appears. The {present[0]} stays."
    out = sa.object_precision({"vid0000": text}, world)
    assert out["mentions"] == 3
    assert out["object_precision"] == pytest.approx(2 / 3)
    assert out["chair_s"] == 1.0
    assert out["object_recall"] == pytest.approx(1 / len(present))


def test_aggregate_spread_rule():
    sa = _module()
    metrics = {**dict.fromkeys(sa.HEADLINE, 0.5), "mentions": 3}
    per_seed = {s: {m: dict(metrics) for m in ("sft",) + sa.METHODS} for s in range(3)}
    for s, gain in enumerate((0.10, 0.12, 0.11)):
        per_seed[s]["sft"]["accuracy"] = 0.50 + 0.01 * s
        per_seed[s]["rrpo"]["accuracy"] = 0.50 + 0.01 * s + gain
        per_seed[s]["dpo"]["accuracy"] = 0.50 + 0.01 * s + (0.02 if s else -0.01)
    table = sa.aggregate(per_seed)
    assert table["rrpo"]["accuracy"]["delta_mean"] == pytest.approx(0.11)
    assert table["rrpo"]["accuracy"]["beats_sft_beyond_spread"]
    assert not table["dpo"]["accuracy"]["beats_sft_beyond_spread"]  # one seed got worse
    assert not table["mask_dpo"]["accuracy"]["beats_sft_beyond_spread"]  # no change


def test_beyond_spread_needs_every_seed_and_a_mean_over_twice_the_std():
    sa = _module()
    assert sa.beyond_spread([0.10, 0.12, 0.11])  # mean 0.11 > 2 x 0.01
    assert not sa.beyond_spread([0.01, 0.10, 0.02])  # all positive, but mean 0.043 < 2 x 0.049
    assert not sa.beyond_spread([0.10, 0.12, -0.01])
    assert sa.beyond_spread([-0.05, -0.06, -0.05], lower_is_better=True)  # CHAIR_s going down


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One `--quick` run of the whole harness: (module, work folder, results folder, table)."""
    sa = _module()
    root = tmp_path_factory.mktemp("quick")
    table = sa.main(["--quick", "--work", str(root / "work"), "--results", str(root / "res")])
    return sa, root / "work", root / "res", table


def test_quick_run_writes_results(quick_run):
    sa, work, res, table = quick_run
    assert set(table) == {"sft", *sa.METHODS}
    stem = res / "synthetic_alignment"
    data = json.loads(Path(f"{stem}.json").read_text())
    assert data["meta"]["seeds"] == [0]
    stages = data["meta"]["pair_stages"]["0"]
    assert stages["asked"] == stages["kept"] + sum(stages["filtered"].values()) > 0
    trained = [json.loads(line) for line in open(work / "seed0/pairs/rrpo_qa.balanced.jsonl")]
    short = [r for r in trained if r["meta"]["question_type"] != "open"]
    assert stages["clean_video"]["pairs"] == len(short) > 0
    assert sum(k["pairs"] for k in stages["clean_video"]["by_kind"].values()) == len(short)
    assert set(data["meta"]["base_validation"]["by_kind"]) <= {"existence", "attribute", "direction", "count", "order"}
    text = Path(f"{stem}.json").read_text()
    assert str(ROOT) not in text and str(work) not in text and "$WORK/seed0/" in text  # the work folder is outside the repo
    md = Path(f"{stem}.md").read_text()
    assert "| RRPO |" in md and "| SFT on chosen (control) |" in md and "The shared base model" in md
    assert Path(f"{stem}.png").stat().st_size > 0


def test_quick_run_scores_a_held_out_world_no_model_was_trained_or_chosen_on(quick_run):
    """The default design's table comes from the test split of a world of its own (seed
    held_out_world, held_out_videos videos): no scene of it is in the benchmark world (pairs,
    SFT, validation) or the pretraining world, every model's answers are on its test videos, and
    the report says which world it was."""
    sa, work, res, _ = quick_run
    meta = json.loads((res / "synthetic_alignment.json").read_text())["meta"]
    seed, videos = sa.QUICK["held_out_world"], sa.QUICK["held_out_videos"]
    assert meta["held_out_world"] == seed not in (0, sa.PRETRAIN_SEED)
    held_out = work / f"second_world_seed{seed}"
    assert not _scenes(held_out) & (_scenes(work / "world") | _scenes(work / "pretrain_world"))
    assert meta["test_videos"] == videos // 4 == len(sa.split_ids(held_out, "test"))
    bench = [json.loads(line) for line in open(held_out / "bench.jsonl")]
    assert meta["bench_pairs"] == sum(b["split"] == "test" for b in bench) > 0
    answered = json.loads((sa.eval_folder(work, 0, seed) / "results.json").read_text())["models"]
    assert {m["name"] for m in answered} == {"sft", *(sa.run_name(m, c["lr"], sa.QUICK) for m, c in meta["lrs"].items())}
    assert not (work / "seed0/eval").exists()  # nothing scored on the benchmark world's own test split
    assert f"the test split of world seed {seed}" in (res / "synthetic_alignment.md").read_text()


def test_the_first_defaults_design_from_flags(quick_run):
    """The design of the default before stop 36, by its flags: exact-truth SFT (`--sft-mislabels`
    alone), 40-step copies in folders without a step count, the lr on seed 0 by pair accuracy
    with no guard, the benchmark world's own test split. Its command names each flag, and its
    work folder is the exact-truth one."""
    import yaml

    sa, work, _, _ = quick_run
    root = work.parent / "first_default"
    flags = ["--sft-mislabels", "--align-steps", "40", "--align-lrs", "0.0001", "--no-lr-on-all-seeds", "--primary",
             "accuracy", "--guard", "none", "--held-out-world", "0", "--methods", "dpo"]
    sa.ROOT = root
    try:
        sa.main(["--quick", *flags])
    finally:
        sa.ROOT = ROOT
    first = root / "runs/synthetic_alignment_quick"
    meta = json.loads((first / "synthetic_alignment.json").read_text())["meta"]
    assert meta["command"] == "python benchmarks/synthetic_alignment.py --quick " + " ".join(flags)
    size = meta["size"]
    assert (size["sft_mislabels"], size["guard"], size["primary"], size["held_out_world"]) == ({}, None, "accuracy", 0)
    assert (first / "seed0/dpo-lr0.0001/final").exists() and meta["lrs"]["dpo"]["seeds"] == [0]
    assert list(meta["pairs"]["training"]) == ["dpo"]  # the recipes of the rows it trained, no others
    assert yaml.safe_load((first / "sft-seed0/config.yaml").read_text())["data"]["train_file"].endswith("sft_mix_train.jsonl")
    assert (first / "seed0/eval/results.json").exists() and meta["test_videos"] == sa.QUICK["n_videos"] // 4
    assert "the benchmark world's test split" in (first / "synthetic_alignment.md").read_text()


def test_the_pretraining_world_cannot_be_the_held_out_one(tmp_path, capsys):
    sa = _module()
    with pytest.raises(SystemExit):
        sa.main(["--quick", "--work", str(tmp_path), "--held-out-world", str(sa.PRETRAIN_SEED)])
    assert "pretraining world" in capsys.readouterr().err


def test_quick_run_pretrains_on_another_world_and_the_control_on_chosen_answers(quick_run):
    """The vision stand-in and the base language model never see the benchmark world's videos
    (the first harness trained its vision stand-in on them and it memorised them); the control
    row trains SFT on the RRPO-recipe pairs' chosen answers."""
    import yaml

    sa, work, res, _ = quick_run
    pretrain, bench = work / "pretrain_world", work / "world"
    assert not _scenes(pretrain) & _scenes(bench)
    stamp = json.loads((work / "vision/built.json").read_text())
    assert stamp["videos"] == sa.QUICK["pretrain_videos"]
    base_cfg = yaml.safe_load((work / "base-lm/config.yaml").read_text())
    base_mix = Path(base_cfg["data"]["train_file"])
    assert base_mix.parent.resolve() == pretrain.resolve()
    assert all((pretrain / json.loads(line)["video"]).exists() for line in open(base_mix))
    sft_cfg = yaml.safe_load((work / "sft-seed0/config.yaml").read_text())
    assert Path(sft_cfg["model"]["path"]).resolve() == (work / "base-lm/final").resolve()
    lr = json.loads((res / "synthetic_alignment.json").read_text())["meta"]["lrs"]["sft_chosen"]["lr"]
    control_cfg = yaml.safe_load((work / "seed0" / sa.run_name("sft_chosen", lr, sa.QUICK) / "config.yaml").read_text())
    assert control_cfg["method"] == "sft" and control_cfg["data"]["train_file"].endswith("rrpo_qa.balanced.chosen.jsonl")
    pairs = [json.loads(line) for line in open(work / "seed0/pairs/rrpo_qa.balanced.jsonl")]
    records = [json.loads(line) for line in open(control_cfg["data"]["train_file"])]
    assert [(r["prompt"], r["response"], r["video"]) for r in records] == [(p["prompt"], p["chosen"], p["video"])
                                                                             for p in pairs]


def test_quick_run_temple_control_trains_on_temple_pairs_chosen_answers(quick_run):
    """TEMPLE-style's control row trains SFT on exactly TEMPLE's pairs' chosen answers (the truth
    caption of each perturbed copy), the records TEMPLE's RPO applies its SFT term to."""
    import yaml

    sa, work, res, _ = quick_run
    lr = json.loads((res / "synthetic_alignment.json").read_text())["meta"]["lrs"]["sft_chosen_temple"]["lr"]
    cfg = yaml.safe_load((work / "seed0" / sa.run_name("sft_chosen_temple", lr, sa.QUICK) / "config.yaml").read_text())
    assert cfg["method"] == "sft" and cfg["data"]["train_file"].endswith("temple.chosen.jsonl")
    pairs = [json.loads(line) for line in open(work / "seed0/pairs/temple.jsonl")]
    records = [json.loads(line) for line in open(cfg["data"]["train_file"])]
    assert pairs and [(r["prompt"], r["response"], r["video"]) for r in records] == [
        (p["prompt"], p["chosen"], p["video"]) for p in pairs]


def test_open_pairs_keeps_the_open_descriptions_alone(tmp_path):
    sa = _module()
    rows = [{"id": f"p{i}", "video": "v.mp4", "prompt": "q", "chosen": c, "rejected": r, "meta": {"question_type": t}}
            for i, (t, c, r) in enumerate([("yes_no", "yes", "no"), ("open", "A red circle.", "A blue circle."),
                                          ("short", "red", "blue"), ("open", "A square.", "A circle.")])]
    pairs = tmp_path / "rrpo_qa.balanced.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = sa.open_pairs(pairs)
    assert out.name == "rrpo_qa.balanced.open.jsonl"
    assert [json.loads(line) for line in open(out)] == [rows[1], rows[3]]
    # the caption rows' control trains SFT on those pairs' chosen answers alone (the quick run keeps none)
    control = sa.train_file("sft_chosen_open", {"rrpo_qa": pairs, "rrpo_qa_open": out})
    assert control.name == "rrpo_qa.balanced.open.chosen.jsonl"
    assert [(r["prompt"], r["response"]) for r in map(json.loads, open(control))] == [("q", "A red circle."),
                                                                                       ("q", "A square.")]


def test_quick_run_ablation_trains_on_the_caption_pairs_alone(quick_run):
    """The ablation rows (DPO / RRPO, caption pairs only) train on exactly the open-description
    pairs of the file DPO and RRPO train on (or, where the generator kept none, are reported
    as having no pairs)."""
    import yaml

    sa, work, res, _ = quick_run
    pairs = [json.loads(line) for line in open(work / "seed0/pairs/rrpo_qa.balanced.jsonl")]
    opened = [json.loads(line) for line in open(work / "seed0/pairs/rrpo_qa.balanced.open.jsonl")]
    assert opened == [p for p in pairs if p["meta"]["question_type"] == "open"]
    meta = json.loads((res / "synthetic_alignment.json").read_text())["meta"]
    for method, loss in (("dpo_open", "dpo"), ("rrpo_open", "rrpo")):
        if not opened:
            assert meta["no_pairs"][method] == [0]
            continue
        cfg = yaml.safe_load((work / "seed0" / sa.run_name(method, meta["lrs"][method]["lr"], sa.QUICK) / "config.yaml").read_text())
        assert cfg["method"] == loss and cfg["data"]["train_file"].endswith("rrpo_qa.balanced.open.jsonl")


def test_instruction_mix_asks_in_the_benchmark_format_and_leaves_out_videos(tmp_path):
    from mmalign.world import build_world

    sa = _module()
    world = tmp_path / "world"
    build_world(world, n_videos=4, seed=0, show_progress=False)
    out = sa.instruction_mix(world, ("train",), {"vid0001"}, "mix")
    rows = [json.loads(line) for line in open(out)]
    bench = [json.loads(line) for line in open(world / "bench.jsonl")]
    sft = [json.loads(line) for line in open(world / "sft_train.jsonl")]
    kept = lambda r: Path(r["video"]).stem not in {"vid0001"}  # noqa: E731
    expected = sum(kept(r) for r in sft) + 2 * sum(kept(b) and b["split"] == "train" for b in bench)
    assert len(rows) == expected > 0
    assert all(Path(r["video"]).stem != "vid0001" for r in rows)
    asked = [r for r in rows if r["meta"]["kind"].startswith("bench_")]
    assert asked and all(r["prompt"].endswith(sa.BENCH_SUFFIX) and r["response"] in ("yes", "no") for r in asked)
    assert {r["response"] for r in asked} == {"yes", "no"}


def test_clean_video_check_counts_the_answers_already_right(tmp_path, monkeypatch):
    """Pairs whose chosen answer the (stubbed) model gives on the clean video count as right."""
    import mmalign.data.video
    import mmalign.models.backbone
    import mmalign.models.generate

    sa = _module()
    pairs = tmp_path / "pairs.jsonl"
    rows = [("yes_no", "existence", "Is there a red circle?", "yes", "yes"),
            ("yes_no", "existence", "Is there a red square?", "no", "yes"),
            ("short", "color", "What color is the circle?", "red", "red"),
            ("short", "color", "What color is the square?", "blue", "green"),
            ("yes_no", "direction", "Does the red circle move left?", "no", "No."),
            ("open", "caption", "Describe what happens in the video.", "A red circle moves left.", "whatever")]
    pairs.write_text("".join(json.dumps({"id": str(i), "video": "v.mp4", "prompt": q, "chosen": c, "rejected": "x",
                                         "meta": {"question_type": t, "question_kind": k}}) + "\n"
                             for i, (t, k, q, c, _) in enumerate(rows)))
    replies = {q: r for _, _, q, _, r in rows}

    class Model:
        def eval(self):
            return self

    monkeypatch.setattr(mmalign.models.backbone, "load_backbone", lambda cfg: (Model(), None))
    monkeypatch.setattr(mmalign.data.video, "load_video", lambda path, **kw: None)
    monkeypatch.setattr(mmalign.models.generate, "generate",
                        lambda model, processor, prompts, **kw: [[replies[p.text]] for p in prompts])
    out = sa.clean_video_check("unused", pairs)
    assert out["pairs"] == 5  # the open caption is not a short answer
    assert out["right_on_clean"] == pytest.approx(3 / 5)
    assert out["by_kind"] == {"color": {"pairs": 2, "right_on_clean": 0.5},
                              "direction": {"pairs": 1, "right_on_clean": 1.0},
                              "existence": {"pairs": 2, "right_on_clean": 0.5}}


def test_figure_has_one_column_per_judged_metric_with_the_seed_deltas():
    """The first plot drew pair accuracy twice (PRIMARY and "accuracy" are one metric); each
    column now holds a metric and, below it, every method's per-seed deltas."""
    sa = _module()
    metrics = {m: {"mean": 0.5, "std": 0.1, "values": [0.4, 0.5, 0.6], "deltas": [0.01, -0.02, 0.03]}
               for m in sa.HEADLINE}
    table = {name: {**metrics, "mentions": [3, 3, 3]} for name in ("sft",) + sa.METHODS}
    fig = sa.figure(table, {"seeds": [0, 1, 2]})
    top, bottom = fig.axes[:len(sa.JUDGED)], fig.axes[len(sa.JUDGED):]
    assert [ax.get_title() for ax in top] == [sa.NAMES[m] for m in sa.JUDGED]
    assert len(set(sa.JUDGED)) == len(sa.JUDGED) == 4
    assert all(ax.get_title().startswith("Δ " + sa.NAMES[m]) for ax, m in zip(bottom, sa.JUDGED))
    dots = [c for c in bottom[0].collections if len(c.get_offsets()) == 3]
    assert len(dots) == len(sa.METHODS)  # one dot per seed for every method


def test_token_labels_mark_the_cells_an_object_covers():
    """A red square in the top-left 32x32 cell of a 64 px frame for frames 0-3, then gone: with
    8 sampled frames [0, 2, ..., 14] and a 2x2 token grid, only the top-left token of the first
    two time steps (frames 0+2, 4+6: frame 4 has no box) names it."""
    sa = _module()
    boxes = [{"0": [2, 2, 30, 30]} if f < 4 else {} for f in range(16)]
    truth = {"scene": {"objects": [{"id": 0, "color": "red", "shape": "square", "direction": "static"}]},
             "boxes": boxes}
    labels = sa.token_labels(truth, list(range(0, 16, 2)), grid_t=4, grid_hw=(2, 2), frame_size=64)
    assert labels.shape == (16, 18 + 5)
    red_square, static = 1, 18 + 4  # combos are colour-major (red circle, red square, ...); static is last
    on = {tuple(x) for x in np.argwhere(labels > 0)}
    assert on == {(0, red_square), (0, static)}  # frames 0, 2 -> time step 0, top-left cell only
    # A box straddling the vertical middle line lights both cells of its row, but only where the
    # overlap is a real area (a 1-pixel sliver is not).
    truth["boxes"] = [{"0": [20, 0, 44, 20]}] * 2 + [{"0": [31, 0, 60, 20]}] * 14
    labels = sa.token_labels(truth, list(range(0, 16, 2)), grid_t=4, grid_hw=(2, 2), frame_size=64)
    assert labels[0, red_square] == labels[1, red_square] == 1 and labels[2:4].sum() == 0
    assert labels[4, red_square] == 0 and labels[5, red_square] == 1


def test_result_json_names_no_folder_of_the_machine(tmp_path):
    """Paths under the repository are written relative to it; paths under a work folder outside
    it (through a symlink too) as $WORK/...: the first full run with --work /tmp/... wrote
    absolute paths."""
    from mmalign.io import write_result_json

    repo, work = tmp_path / "repo", tmp_path / "elsewhere" / "work"
    repo.mkdir(); work.mkdir(parents=True)
    (tmp_path / "link").symlink_to(work)
    obj = {"a": str(repo / "runs/x/final"), "b": str(work / "seed0/final"), "c": str(tmp_path / "link/seed1/final"),
           "d": "/opt/other"}
    write_result_json(repo / "r.json", obj, repo, work=tmp_path / "link")
    assert json.loads((repo / "r.json").read_text()) == {"a": "runs/x/final", "b": "$WORK/seed0/final",
                                                         "c": "$WORK/seed1/final", "d": "/opt/other"}
    write_result_json(repo / "r.json", {"a": str(repo / "runs/w/final")}, repo, work=repo / "runs/w")
    assert json.loads((repo / "r.json").read_text()) == {"a": "runs/w/final"}  # a work folder inside the repo


def test_vision_token_scores_pool_objects_and_motions_apart(tmp_path):
    """A head that always names one object and one motion (zero weights, biases +-5): its object
    and motion precision / recall follow from the token labels alone, counted here by hand."""
    import torch
    from safetensors.torch import save_file

    from mmalign.config import ModelConfig
    from mmalign.models.backbone import load_backbone
    from mmalign.world import build_world

    sa = _module()
    world = tmp_path / "world"
    build_world(world, n_videos=4, seed=0, object_sizes=(26, 32), max_objects=2, show_progress=False)
    vision = sa.build_small_qwen(tmp_path / "model", hidden=32, layers=1, seed=0)
    ids = ["vid0000", "vid0001", "vid0002"]
    model, processor = load_backbone(ModelConfig(path=str(vision)))
    labels = torch.cat([sa.video_tokens(json.loads((world / "truth" / f"{v}.json").read_text()), world, model,
                                        processor)[2] for v in ids]).numpy()
    combos = 18
    obj, motion = int(labels[:, :combos].sum(0).argmax()), combos + int(labels[:, combos:].sum(0).argmax())
    bias = torch.full((labels.shape[1],), -5.0)
    bias[[obj, motion]] = 5.0
    save_file({"weight": torch.zeros(labels.shape[1], 32), "bias": bias}, str(vision / "vision_head.safetensors"))
    scores = sa.vision_token_scores(vision, world, ids)
    tokens = labels.shape[0]
    expected = {"precision": labels[:, obj].sum() / tokens, "recall": labels[:, obj].sum() / labels[:, :combos].sum(),
                "motion_precision": labels[:, motion].sum() / tokens,
                "motion_recall": labels[:, motion].sum() / labels[:, combos:].sum()}
    assert scores == pytest.approx(expected)
    assert 0 < expected["precision"] < 1 and 0 < expected["motion_precision"] < 1
    assert expected["precision"] != expected["motion_precision"] or expected["recall"] != expected["motion_recall"]


def test_vision_and_base_steps_from_the_command_line_get_their_own_work_folder(tmp_path):
    """`--vision-steps` / `--base-steps` / `--base-seed` train the stand-in and the base for that
    many steps (the base with that data-order seed), in a work folder of their own (finished
    steps are reused by folder, so the default one would hand back a base trained to the default
    recipe), and the report's command says so."""
    import yaml

    sa = _module()
    sa.ROOT = tmp_path
    sa.main(["--quick", "--vision-steps", "3", "--base-steps", "4", "--base-seed", "2", "--methods", "dpo"])
    work = tmp_path / "runs/synthetic_alignment_quick_vision_steps3_base_steps4_base_seed2_sft-purple-as-blue"
    assert json.loads((work / "vision/built.json").read_text())["steps"] == 3
    assert len((work / "base-lm/metrics.jsonl").read_text().splitlines()) == 4
    assert yaml.safe_load((work / "base-lm/config.yaml").read_text())["train"]["seed"] == 2
    assert yaml.safe_load((work / "sft-seed0/config.yaml").read_text())["train"]["seed"] == 0  # SFT keeps its own
    meta = json.loads((work / "synthetic_alignment.json").read_text())["meta"]
    assert meta["command"] == ("python benchmarks/synthetic_alignment.py --quick --vision-steps 3 --base-steps 4"
                               " --base-seed 2 --methods dpo")
    assert (meta["size"]["vision_steps"], meta["size"]["base_steps"], meta["size"]["base_seed"]) == (3, 4, 2)
    assert not (tmp_path / "runs/synthetic_alignment_quick_sft-purple-as-blue").exists()


def test_choose_lrs_takes_the_lr_whose_validation_changes_pass_the_target_rule():
    """Over several seeds, the lr is the one whose per-seed validation changes (each against its
    own SFT model) pass the target's rule with the largest mean; only when none passes, the
    largest mean change. Seed 0 alone (the default) picks its best score, ties the smaller lr."""
    sa = _module()

    def scores(sft, by_lr):
        return {"dpo": {"by_lr": by_lr, "sft": sft, "by_kind": {lr: {} for lr in by_lr}, "sft_by_kind": {}}}

    # lr 1e-4: changes +0.050, -0.001, +0.040 (mean 0.030, one seed worse); 3e-5: +0.010, +0.012, +0.011
    seeds = {0: scores(0.60, {3e-5: 0.610, 1e-4: 0.650}), 1: scores(0.70, {3e-5: 0.712, 1e-4: 0.699}),
             2: scores(0.65, {3e-5: 0.661, 1e-4: 0.690})}
    chosen = sa.choose_lrs(seeds)["dpo"]
    assert chosen["lr"] == 3e-5 and chosen["seeds"] == [0, 1, 2]
    assert chosen["validation_deltas"][1e-4] == pytest.approx([0.050, -0.001, 0.040])
    assert sa.choose_lrs({0: seeds[0]})["dpo"]["lr"] == 1e-4  # seed 0's best score
    # none passes: the largest mean change (1e-4: +0.005 against 3e-5: -0.010)
    worse = {0: scores(0.60, {3e-5: 0.59, 1e-4: 0.62}), 1: scores(0.70, {3e-5: 0.69, 1e-4: 0.69})}
    assert sa.choose_lrs(worse)["dpo"]["lr"] == 1e-4
    assert sa.choose_lrs({0: scores(0.60, {1e-5: 0.62, 3e-5: 0.62})})["dpo"]["lr"] == 1e-5  # a tie: the smaller step
    # a seed whose generator kept no pair for the method: the lr comes from the other seeds
    chosen = sa.choose_lrs({0: seeds[0], 1: {}, 2: seeds[2]})["dpo"]
    assert chosen["seeds"] == [0, 2] and chosen["lr"] == 1e-4  # +0.050 / +0.040 against +0.010 / +0.011


def test_choose_lrs_by_a_caption_metric_goes_the_good_way_and_keeps_the_length():
    """--primary chair_s: the good way is down, so the lr with the largest fall wins; an lr that
    changes the objects named by more than 15% on any seed is passed over (the target's length
    rule, on validation) unless every lr does."""
    sa = _module()

    def scores(sft, by_lr, sft_named, named):
        return {"dpo": {"by_lr": by_lr, "sft": sft, "by_kind": {lr: {} for lr in by_lr}, "sft_by_kind": {},
                        "mentions": named, "sft_mentions": sft_named}}

    # CHAIR_s changes: 1e-5: -0.01, -0.02; 1e-4: -0.10, -0.08 (names 100 -> 80 on seed 1: -20%); 3e-5: -0.04, -0.05
    seeds = {0: scores(0.30, {1e-5: 0.29, 3e-5: 0.26, 1e-4: 0.20}, 100, {1e-5: 100, 3e-5: 95, 1e-4: 90}),
             1: scores(0.40, {1e-5: 0.38, 3e-5: 0.35, 1e-4: 0.32}, 100, {1e-5: 101, 3e-5: 110, 1e-4: 80})}
    chosen = sa.choose_lrs(seeds, "chair_s")["dpo"]
    assert chosen["lr"] == 3e-5
    assert chosen["validation_objects_named_change"][1e-4] == pytest.approx([-0.10, -0.20])
    assert "validation_chair_s" in chosen
    # object precision, higher is better: 1e-4 would win on the mean, but it names 20% fewer objects
    prec = {s: scores(1 - v["dpo"]["sft"], {lr: 1 - x for lr, x in v["dpo"]["by_lr"].items()}, v["dpo"]["sft_mentions"],
                      v["dpo"]["mentions"]) for s, v in seeds.items()}
    assert sa.choose_lrs(prec, "object_precision")["dpo"]["lr"] == 3e-5
    # every lr beyond 15%: the rule alone
    for s in seeds.values():
        s["dpo"]["mentions"] = {lr: 50 for lr in s["dpo"]["by_lr"]}
    assert sa.choose_lrs(seeds, "chair_s")["dpo"]["lr"] == 1e-4


def test_choose_lrs_with_a_guard_passes_over_an_lr_that_lowers_the_yes_no_answers():
    """--guard accuracy: the caption metric's best lr is passed over when its mean validation
    change in pair accuracy is below zero; if every lr lowers it, the guard gives way."""
    sa = _module()

    def scores(sft, by_lr, sft_acc, acc):
        return {"dpo": {"by_lr": by_lr, "sft": sft, "by_kind": {lr: {} for lr in by_lr}, "sft_by_kind": {},
                        "mentions": {lr: 100 for lr in by_lr}, "sft_mentions": 100,
                        "bench": {lr: {"accuracy": a, "halluc_accuracy": 0.9} for lr, a in acc.items()},
                        "sft_bench": {"accuracy": sft_acc, "halluc_accuracy": 0.9}}}

    # precision: 3e-4 gains most (+0.06, +0.05) but pair accuracy -0.10, +0.02 (mean -0.04); 1e-4: +0.02, +0.03
    # with pair accuracy +0.01, -0.01 (mean 0: kept)
    seeds = {0: scores(0.80, {1e-4: 0.82, 3e-4: 0.86}, 0.60, {1e-4: 0.61, 3e-4: 0.50}),
             1: scores(0.70, {1e-4: 0.73, 3e-4: 0.75}, 0.70, {1e-4: 0.69, 3e-4: 0.72})}
    assert sa.choose_lrs(seeds, "object_precision")["dpo"]["lr"] == 3e-4
    chosen = sa.choose_lrs(seeds, "object_precision", "accuracy")["dpo"]
    assert chosen["lr"] == 1e-4 and chosen["guard"] == "accuracy"
    assert chosen["validation_accuracy_deltas"][3e-4] == pytest.approx([-0.10, 0.02])
    assert sa.choose_lrs(seeds, "object_precision", "halluc_accuracy")["dpo"]["lr"] == 3e-4  # unchanged there
    seeds[1]["dpo"]["bench"][1e-4]["accuracy"] = 0.60  # now both lower it: the guard gives way
    assert sa.choose_lrs(seeds, "object_precision", "accuracy")["dpo"]["lr"] == 3e-4


def test_primary_caption_metric_from_the_command_line_captions_the_validation_videos(quick_run, monkeypatch):
    """`--primary object_precision`: each validation model captions the validation videos, the lr
    follows that metric's validation scores (the objects named recorded beside them), and the
    report's command and primary say so."""
    sa, work, _, _ = quick_run
    res = work.parent / "res_primary"
    captioned = []
    caption_eval = sa.caption_eval

    def counting(path, world, size, ids):
        captioned.append((Path(path).parent.name, tuple(ids)))
        return caption_eval(path, world, size, ids)

    monkeypatch.setattr(sa, "caption_eval", counting)
    sa.main(["--quick", "--work", str(work), "--results", str(res), "--primary", "object_precision",
             "--guard", "accuracy"])
    data = json.loads((res / "synthetic_alignment.json").read_text())
    meta = data["meta"]
    assert meta["primary"] == "object_precision" and meta["size"]["guard"] == "accuracy"
    assert meta["command"].endswith("--quick")  # the default's design: no flag names it
    val_ids = tuple(sa.held_in_split(work / "world", sa.QUICK)[1])
    for method, choice in meta["lrs"].items():
        assert {(sa.run_name(method, lr, sa.QUICK), val_ids) for lr in sa.QUICK["align_lrs"]} <= set(captioned)
        by_lr = choice["validation_object_precision"]["0"]
        named = choice["validation_objects_named_change"]
        within = [lr for lr in by_lr if all(abs(c) <= 0.15 for c in named[lr])] or list(by_lr)
        within = [lr for lr in within if choice["validation_accuracy_deltas"][lr][0] >= 0] or within
        # one seed: its best score among the lrs within the length rule, ties the smaller lr
        assert choice["lr"] == float(max(within, key=lambda lr: (by_lr[lr], -float(lr))))
    md = (res / "synthetic_alignment.md").read_text()
    assert "Primary metric: caption obj. precision ↑" in md and "mean change in pair acc. ↑ is below zero" in md


def test_held_out_scores_follow_the_chosen_lr_in_a_reused_work_folder(quick_run):
    """A rerun whose lr choice differs (e.g. `--lr-on-all-seeds`) scores the newly chosen model:
    the eval folder keeps predictions per run folder, so those of the lr chosen before are not
    mixed in (the harness used to stop there with 'holds predictions made with other settings')."""
    sa, work, _, _ = quick_run
    size, world = dict(sa.QUICK), work / "world"
    test_world, _ = sa.unseen_world(work, size["held_out_world"], size["held_out_videos"], size)
    base = work / "base-lm/final"
    inputs = sa.seed_inputs(0, size, world, work, base)
    first = sa.run_seed(0, size, test_world, work, inputs, {"dpo": {"lr": size["align_lrs"][0]}})
    other = sa.run_seed(0, size, test_world, work, inputs, {"dpo": {"lr": size["align_lrs"][1]}})
    for result, lr in ((first, size["align_lrs"][0]), (other, size["align_lrs"][1])):
        name = sa.run_name("dpo", lr, size)
        run = json.loads((sa.eval_folder(work, 0, size["held_out_world"]) / name / "run.json").read_text())
        assert Path(run["model"]).resolve() == (work / "seed0" / name / "final").resolve()
        assert result["dpo"]["train_summary"]["stages"]["dpo"]["steps"] == size["align_steps"]


def test_second_world_check_scores_the_tables_models_on_a_world_no_model_saw(quick_run, tmp_path):
    """benchmarks/second_world_check.py after the quick run: a world of other scenes with SCALE x
    the videos, the DPO / RRPO rows at the lrs the table chose, and each change recomputed here
    from the per-seed scores against that seed's own SFT model."""
    spec = importlib.util.spec_from_file_location("second_world_check", ROOT / "benchmarks/second_world_check.py")
    sw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sw)
    sa, work, res, _ = quick_run
    out = sw.main(["--quick", "--work", str(work), "--tables", str(res / "synthetic_alignment.json"),
                   "--results", str(tmp_path / "sw")])
    second = work / f"second_world_seed{sw.SECOND_SEED}"
    assert not _scenes(second) & (_scenes(work / "world") | _scenes(work / "pretrain_world"))
    assert len(list((second / "truth").glob("*.json"))) == sw.SCALE * sa.QUICK["n_videos"]
    assert out["meta"]["test_videos"] == sw.SCALE * sa.QUICK["n_videos"] // 4
    lrs = json.loads((res / "synthetic_alignment.json").read_text())["meta"]["lrs"]
    assert set(out["rows"]) == {sa.run_name(m, lrs[m]["lr"], sa.QUICK) for m in sw.METHODS if m in lrs} != set()
    for name, row in out["rows"].items():
        scores = out["per_seed"][0]
        assert row["changes"]["accuracy"]["deltas"] == [pytest.approx(scores[name]["accuracy"] - scores["sft"]["accuracy"])]
        run = json.loads((work / f"seed0/eval_world{sw.SECOND_SEED}/{name}/run.json").read_text())
        assert Path(run["model"]).resolve() == (work / f"seed0/{name}/final").resolve()
    assert str(work) not in (tmp_path / "sw/second_world.json").read_text()
    assert "| DPO (" in (tmp_path / "sw/second_world.md").read_text()


def test_align_steps_from_the_command_line_train_copies_of_their_own(quick_run):
    """`--align-steps 2 --methods rrpo dpo`: those rows' aligned copies train 2 steps, in folders
    named with them (the default steps' copies in the same work folder are not reused for them),
    the other rows are neither trained nor reported, and the unseen-world check scores those
    folders."""
    spec = importlib.util.spec_from_file_location("second_world_check", ROOT / "benchmarks/second_world_check.py")
    sw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sw)
    sa, work, _, _ = quick_run
    res = work.parent / "res_steps"
    sa.main(["--quick", "--work", str(work), "--results", str(res), "--align-steps", "2", "--methods", "rrpo", "dpo"])
    data = json.loads((res / "synthetic_alignment.json").read_text())
    assert data["meta"]["command"].endswith("--quick --align-steps 2 --methods dpo rrpo")
    assert set(data["table"]) == {"sft", "dpo", "rrpo"} and set(data["meta"]["lrs"]) == {"dpo", "rrpo"}
    assert not list(work.glob("seed0/temple-*-steps2"))  # the rows left out are not trained
    assert "| RRPO |" in (res / "synthetic_alignment.md").read_text()
    lr = data["meta"]["lrs"]["dpo"]["lr"]
    assert data["per_seed"]["0"]["dpo"]["train_summary"]["stages"]["dpo"]["steps"] == 2
    assert (work / f"seed0/dpo-lr{lr:g}-steps2/final").exists()
    assert json.loads((work / f"seed0/dpo-lr{lr:g}-steps1/summary.json").read_text())["stages"]["dpo"]["steps"] == 1
    assert "dpo-lr" + f"{lr:g}-steps2" in sw.rows_to_score({res / "synthetic_alignment.json": data["meta"]})
    rows = sw.rows_to_score({res / "synthetic_alignment.json": data["meta"]}, ("rrpo", "sft_chosen"))
    assert set(rows) == {f"rrpo-lr{data['meta']['lrs']['rrpo']['lr']:g}-steps2"}  # the tables trained no control
    assert "(2 steps of 8 pairs)" in (res / "synthetic_alignment.md").read_text()


def test_second_world_check_on_another_seed_with_captions(quick_run, tmp_path, capsys):
    """`--world-seed 3 --captions`: a third unseen world, its test videos captioned by every
    model; CHAIR_s counts a fall as the good way; a seed the models trained on is refused."""
    spec = importlib.util.spec_from_file_location("second_world_check", ROOT / "benchmarks/second_world_check.py")
    sw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sw)
    sa, work, res, _ = quick_run
    out = sw.main(["--quick", "--work", str(work), "--tables", str(res / "synthetic_alignment.json"),
                   "--results", str(tmp_path / "w3"), "--world-seed", "3", "--captions",
                   "--methods", "dpo", "rrpo", "sft_chosen"])
    lrs = json.loads((res / "synthetic_alignment.json").read_text())["meta"]["lrs"]
    assert {row["method"] for row in out["rows"].values()} == {"dpo", "rrpo", "sft_chosen"} <= set(lrs)
    third = work / "second_world_seed3"
    assert not _scenes(third) & (_scenes(work / "world") | _scenes(work / "pretrain_world")
                                 | _scenes(work / f"second_world_seed{sw.SECOND_SEED}"))
    assert out["meta"]["world_seed"] == 3 and out["meta"]["command"].endswith(
        "--world-seed 3 --captions --methods dpo rrpo sft_chosen --results " + str(tmp_path / "w3"))
    scores = out["per_seed"][0]
    for name, row in out["rows"].items():
        c = row["changes"]["chair_s"]
        assert c["deltas"] == [pytest.approx(scores[name]["chair_s"] - scores["sft"]["chair_s"])]
        assert c["beyond_spread"] == (c["deltas"][0] < 0)  # one seed: the rule is its sign, downwards
        if scores["sft"]["mentions"]:
            assert row["changes"]["objects_named"] == [pytest.approx(scores[name]["mentions"] / scores["sft"]["mentions"] - 1)]
    assert "Δ CHAIR_s ↓ per seed" in (tmp_path / "w3/second_world.md").read_text()
    fig = sw.figure(out)  # one panel per metric, one bar per row, one dot per seed
    assert len(fig.axes) == len(sw.METRICS + sw.CAPTION_METRICS)
    assert len(fig.axes[-1].patches) == len(out["rows"])
    assert (tmp_path / "w3/second_world.png").stat().st_size > 0
    (tmp_path / "w3/second_world.md").unlink()
    sw.main(["--report-only", "--results", str(tmp_path / "w3")])
    assert "Δ CHAIR_s ↓ per seed" in (tmp_path / "w3/second_world.md").read_text()
    with pytest.raises(SystemExit):
        sw.main(["--quick", "--work", str(work), "--world-seed", "0"])
    assert "that world is not unseen" in capsys.readouterr().err


def test_second_world_check_against_a_control_row(quick_run, tmp_path, capsys):
    """`--against sft_chosen`: every other row is also set against the control, seed by
    seed (its score minus the control's, not minus SFT's), with the target's rule; a control
    that is not among --methods is refused."""
    spec = importlib.util.spec_from_file_location("second_world_check", ROOT / "benchmarks/second_world_check.py")
    sw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sw)
    sa, work, res, _ = quick_run
    common = ["--quick", "--work", str(work), "--tables", str(res / "synthetic_alignment.json"), "--world-seed", "3",
              "--captions"]
    out = sw.main(common + ["--results", str(tmp_path / "c"), "--methods", "dpo", "rrpo", "sft_chosen",
                            "--against", "sft_chosen"])  # the quick run keeps no caption pair: no *_open row
    control = out["meta"]["against"]
    assert out["rows"][control]["method"] == "sft_chosen" and "against" not in out["rows"][control]
    scores = out["per_seed"][0]
    for name, row in out["rows"].items():
        if name == control:
            continue
        for metric in ("accuracy", "object_precision", "chair_s"):
            c = row["against"][metric]
            assert c["deltas"] == [pytest.approx(scores[name][metric] - scores[control][metric])]
            assert c["beyond_spread"] == ((c["deltas"][0] < 0) if metric == "chair_s" else (c["deltas"][0] > 0))
    md = (tmp_path / "c/second_world.md").read_text()
    assert "Against the control, SFT on chosen (control)" in md
    assert out["meta"]["command"].endswith("--against sft_chosen --results " + str(tmp_path / "c"))
    fig = sw.figure(out)  # a second line of panels: the rows against the control
    assert len(fig.axes) == 2 * len(sw.METRICS + sw.CAPTION_METRICS)
    assert len(fig.axes[-1].patches) == len(out["rows"]) - 1
    with pytest.raises(SystemExit):
        sw.main(common + ["--results", str(tmp_path / "d"), "--methods", "dpo", "--against", "sft_chosen"])
    assert "--against sft_chosen: it must be one of --methods" in capsys.readouterr().err


def _world_mix(world: Path, splits: tuple[str, ...], exclude: set[str], suffix: str) -> list[dict]:
    """The SFT mix as the world's files give it: sft_<split>.jsonl in turn, then bench.jsonl's
    questions in the benchmark's prompt format (written here from the files, not the truth)."""
    rows = [json.loads(line) for split in splits for line in open(world / f"sft_{split}.jsonl")
            if Path(json.loads(line)["video"]).stem not in exclude]
    for line in open(world / "bench.jsonl"):
        b = json.loads(line)
        if b["split"] in splits and Path(b["video"]).stem not in exclude:
            rows += [{"id": f"{b['id']}-{role}", "video": b["video"], "prompt": b[role]["question"] + suffix,
                      "response": b[role]["answer"], "meta": {"kind": "bench_" + b["type"], "split": b["split"]}}
                     for role in ("basic", "hallucination")]
    return rows


def test_instruction_mix_is_the_worlds_records_and_mislabels_only_the_sft_text(tmp_path):
    """Without mislabels the mix holds the world's own records in their order (the base's data
    order decides whether it learns to read the video); with purple=blue every purple object
    of the SFT text is called blue, unless the scene holds a blue one of its shape, while the
    truth the pairs and the scores read keeps purple."""
    from mmalign.world import build_world

    sa = _module()
    world = tmp_path / "world"
    build_world(world, n_videos=48, seed=0, object_sizes=(26, 32), max_objects=2, show_progress=False)
    for splits, exclude in ((("train", "test"), set()), (("train",), {"vid0001", "vid0006"})):
        mix = sa.instruction_mix(world, splits, exclude, "mix")
        assert [json.loads(line) for line in open(mix)] == _world_mix(world, splits, exclude, sa.BENCH_SUFFIX)

    truth_before = {t.name: t.read_text() for t in (world / "truth").glob("*.json")}
    mix = [json.loads(line) for line in open(sa.instruction_mix(world, ("train",), set(), "bad", {"purple": "blue"}))]
    checked = 0
    for name, text in truth_before.items():
        truth = json.loads(text)
        objects = {(o["color"], o["shape"]) for o in truth["scene"]["objects"]}
        if truth["split"] != "train":
            continue
        captions = [r["response"] for r in mix if r["id"] == f"{Path(name).stem}-cap"]
        for color, shape in objects:
            if color == "purple" and ("blue", shape) not in objects:
                assert f"purple {shape}" not in captions[0] and f"blue {shape}" in captions[0]
                checked += 1
    assert checked > 0
    assert {t.name: t.read_text() for t in (world / "truth").glob("*.json")} == truth_before


def test_sft_mislabels_must_name_two_colours(tmp_path, capsys):
    sa = _module()
    with pytest.raises(SystemExit) as exit_:
        sa.main(["--quick", "--work", str(tmp_path), "--sft-mislabels", "purple=mauve"])
    assert exit_.value.code == 2
    assert "--sft-mislabels purple=mauve: need two different colours" in capsys.readouterr().err


def test_pairs_by_colour_splits_the_held_out_pairs_by_the_mislabelled_colour(tmp_path):
    """Hand count: every test pair answered right but for one basic question on a video that
    holds a purple object; that pair counts wrong on the purple side only."""
    from mmalign.world import build_world

    sa = _module()
    world = tmp_path / "world"
    build_world(world, n_videos=40, seed=0, object_sizes=(26, 32), max_objects=2, show_progress=False)
    bench = [json.loads(line) for line in open(world / "bench.jsonl") if json.loads(line)["split"] == "test"]
    purple = {t.stem for t in (world / "truth").glob("*.json")
              if any(o["color"] == "purple" for o in json.loads(t.read_text())["scene"]["objects"])}
    on_purple = [b for b in bench if Path(b["video"]).stem in purple]
    assert on_purple and len(on_purple) < len(bench)
    wrong = on_purple[0]["id"] + "-basic"
    rows = [{"id": f"{b['id']}-{role}", "prompt": "", "error": None,
             "prediction": ("No." if f"{b['id']}-{role}" == wrong else f"{b[role]['answer'].capitalize()}.")}
            for b in bench for role in ("basic", "hallucination")]
    (tmp_path / "eval" / "m").mkdir(parents=True)
    (tmp_path / "eval" / "m" / "predictions.shard0-of-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = sa.pairs_by_colour(tmp_path / "eval", {"model": "m"}, world, {"purple"})["model"]
    assert out == {"coloured": pytest.approx((len(on_purple) - 1) / len(on_purple)), "coloured_pairs": len(on_purple),
                   "other": 1.0, "other_pairs": len(bench) - len(on_purple)}


def test_a_rerun_says_which_finished_steps_it_reused(quick_run, tmp_path):
    """A rerun in the same work folder takes a fraction of the time: its report must not pass
    that off as the harness's wall time."""
    sa, work, res, _ = quick_run
    first = json.loads((res / "synthetic_alignment.json").read_text())["meta"]
    assert first["reused"] == [] and "reusing" not in (res / "synthetic_alignment.md").read_text()
    sa.main(["--quick", "--work", str(work), "--results", str(tmp_path)])
    again = json.loads((tmp_path / "synthetic_alignment.json").read_text())["meta"]
    assert again["reused"] == ["vision", "base-lm", "sft-seed0"]
    assert "reusing the finished vision, base-lm, sft-seed0 of an earlier run" in (tmp_path / "synthetic_alignment.md").read_text()


def test_workers_give_the_serial_results(tmp_path, monkeypatch):
    """--workers 2 runs the seeds' work as jobs in two spawned processes (one torch thread each)
    and writes what one process writes, seed by seed, whether the lrs wait for seed 0's validation
    jobs or for every seed's; the pair settings the command line changed reach the workers (they
    start from a fresh import). The lr on seed 0 first (`--no-lr-on-all-seeds`); then on every
    seed (the default) in the same work folders, so only seed 1's validation jobs are new (the
    suite's time, not two runs from nothing). The lr on every seed: every seed's aligned copies
    at every lr are scored on the held-in validation videos, the one lr per method comes from
    all of them, and the report says so."""
    import sys

    import torch

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sa = importlib.import_module("synthetic_alignment")  # by name: a spawned worker imports it so
    threads = torch.get_num_threads()  # main() runs one thread, as each worker does
    out = {}
    try:
        for design, lr_flags in (("seed0", ["--no-lr-on-all-seeds"]), ("all", [])):
            for workers in ("1", "2"):
                res = tmp_path / f"r{workers}-{design}"
                sa.main(["--quick", "--seeds", "0", "1", "--workers", workers, "--max-changed-fraction", "0.5",
                         *lr_flags, "--work", str(tmp_path / f"w{workers}"), "--results", str(res)])
                out[workers, design] = json.loads((res / "synthetic_alignment.json").read_text())
    finally:
        torch.set_num_threads(threads)
        sys.modules.pop("synthetic_alignment", None)

    def scores(per_seed):
        return {seed: {name: {k: v for k, v in row.items() if k != "train_summary"} if isinstance(row, dict) else row
                       for name, row in rows.items()} for seed, rows in per_seed.items()}

    for design in ("seed0", "all"):
        serial, parallel = out["1", design], out["2", design]
        assert parallel["meta"]["workers"] == 2 and serial["meta"]["workers"] == 1
        assert scores(parallel["per_seed"]) == scores(serial["per_seed"]), design
        assert set(parallel["per_seed"]) == {"0", "1"}
        assert {tuple(c["seeds"]) for c in parallel["meta"]["lrs"].values()} == {(0,) if design == "seed0" else (0, 1)}
        assert ("--no-lr-on-all-seeds" in serial["meta"]["command"]) == (design == "seed0")
    for method, choice in out["1", "all"]["meta"]["lrs"].items():
        assert set(choice["validation_deltas"]) == {str(lr) for lr in sa.QUICK["align_lrs"]}
        for lr in sa.QUICK["align_lrs"]:
            assert (tmp_path / "w1/seed1" / sa.run_name(method, lr, sa.QUICK) / "final").exists()
    assert (tmp_path / "w1/seed1/val-dpo-steps1/results.json").exists()
    assert "chosen on held-in validation videos (seeds [0, 1]" in (tmp_path / "r1-all/synthetic_alignment.md").read_text()
    for seed in (0, 1):  # the workers filtered the rewrites by 0.5, not by the default
        report = json.loads((tmp_path / f"w2/seed{seed}/pairs/rrpo_qa.report.json").read_text())
        assert report["config"]["rrpo"]["max_changed_fraction"] == 0.5
        # Each held-out model was a job of its own; the seed's eval report still holds them all.
        lrs = out["2", "all"]["meta"]["lrs"]
        evaluated = json.loads((sa.eval_folder(tmp_path / "w2", seed, sa.QUICK["held_out_world"]) / "results.json")
                               .read_text())["models"]
        assert {sa.run_name(m, c["lr"], sa.QUICK) for m, c in lrs.items()} <= {m["name"] for m in evaluated}


def test_held_in_videos_when_another_worker_makes_the_same_links(tmp_path, monkeypatch):
    """Every seed links the same held-in videos into the work folder; with --workers two seeds
    do it at once, and a link can appear between a check for it and its making (the old code
    then failed with FileExistsError, about one full test run in ten)."""
    sa = _module()
    world = tmp_path / "world"
    (world / "videos").mkdir(parents=True)
    for vid in ("v0", "v1"):
        (world / "videos" / f"{vid}.mp4").write_bytes(b"")
    folder = sa.held_in_videos(world, tmp_path / "work", ["v0", "v1"])
    monkeypatch.setattr(Path, "exists", lambda self: False)  # the other worker made them after the look
    assert sa.held_in_videos(world, tmp_path / "work", ["v0", "v1"]) == folder
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir()) == ["v0.mp4", "v1.mp4"]
    assert (folder / "v1.mp4").resolve() == (world / "videos" / "v1.mp4").resolve()


def test_another_design_without_results_does_not_overwrite_the_committed_table(tmp_path, quick_run):
    """benchmarks/results holds the default command's table. A command with another design and no
    --results (as the README's "and the same with --base-seed 2" lines run one) writes its table
    beside its runs; it used to overwrite the committed one. Here the other design is another
    primary metric, which reuses the first run's trained steps (another base seed retrained all
    of them: 25 s more of the suite for the same path through main), and the first run starts
    from a copy of the --quick run's work folder, whose finished steps it reuses (18 s less)."""
    import shutil

    sa = _module()  # a fresh copy: its FULL and ROOT can be changed here
    sa.ROOT = tmp_path
    sa.FULL = dict(sa.QUICK)  # the default command's code path at the smoke sizes
    # ... in a copy of the --quick run's work folder: the same design, so its steps are reused
    shutil.copytree(quick_run[1], tmp_path / sa.work_folder(), symlinks=True)
    sa.main([])
    committed = tmp_path / "benchmarks/results/synthetic_alignment.json"
    before = committed.read_bytes()
    assert json.loads(before)["meta"]["command"] == "python benchmarks/synthetic_alignment.py"
    sa.main(["--primary", "accuracy"])
    assert committed.read_bytes() == before
    other = json.loads((tmp_path / "runs/synthetic_alignment_sft-purple-as-blue/synthetic_alignment.json").read_text())
    assert other["meta"]["command"] == "python benchmarks/synthetic_alignment.py --primary accuracy"
