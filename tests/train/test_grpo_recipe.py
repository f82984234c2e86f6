"""The GRPO recipe: the micro-batched update against one whole-batch loss, rollouts (vision once
per prompt), the sampled-distribution scorer, and runs on the tiny Qwen2.5-VL and the world."""

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmalign.config import GrpoConfig, ModelConfig, SamplingConfig, build_config
from mmalign.data.collate import Sequence, collate_sequences
from mmalign.data.video import MediaLoader
from mmalign.data.records import read_records
from mmalign.io import iter_jsonl
from mmalign.losses import group_advantages, grpo_loss
from mmalign.models.backbone import encode_prompt, load_backbone
from mmalign.train.grpo import (encode_visual, micro_batches, rollout, signal_rows, update,
                                vision_token_ids)
from mmalign.train.run import train
from mmalign.train.scoring import TokenScorer


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny model is faster on one thread than on two busy ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- the update, without a model

class ToyScorer(nn.Module):
    """logps = -softplus(x * w): differentiable in w, any shape of rollouts."""

    def __init__(self, t):
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1, 1, t, dtype=torch.float64))

    def forward(self, batch):
        return {"logps": -F.softplus(batch["x"] * self.w)}


def toy_rollouts(n=5, t=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.full((n, t + 1), -100)
    for i, (start, stop) in enumerate([(1, 5), (2, 8), (0, 3), (4, 8), (1, 8)][:n]):
        labels[i, 1 + start:1 + stop] = 1  # completions of 4, 6, 3, 4, 7 tokens
    x = torch.randn(n, t, generator=gen, dtype=torch.float64)
    mask = (labels[:, 1:] != -100).double()
    old = (-F.softplus(x * torch.linspace(-1, 1, t, dtype=torch.float64))
           + 0.3 * torch.randn(n, t, generator=gen, dtype=torch.float64)) * mask  # ratios off 1: some clip
    ref = old + 0.2 * torch.randn(n, t, generator=gen, dtype=torch.float64) * mask
    adv = torch.randn(n, generator=gen, dtype=torch.float64)
    return labels, x, old, ref, adv, mask


@pytest.mark.parametrize("loss_type", ["token", "sequence", "dapo", "dr_grpo"])
def test_micro_batched_update_equals_one_whole_batch_loss(loss_type):
    from accelerate import Accelerator

    labels, x, old, ref, adv, mask = toy_rollouts()
    g = GrpoConfig(clip_eps=0.2, clip_eps_high=0.28, kl_beta=0.04, loss_type=loss_type)

    whole = ToyScorer(7)
    want = grpo_loss(whole({"x": x})["logps"], old, ref, adv, mask, clip_eps=0.2, clip_eps_high=0.28, beta=0.04,
                     loss_type=loss_type, max_completion_length=g.max_new_tokens)
    want.loss.backward()

    scorer = ToyScorer(7)
    optimizer = torch.optim.SGD(scorer.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    chunks = micro_batches([0, 1, 2, 3, 4], 3)  # [0, 1, 2] and [3, 4]: unequal rows and tokens
    batches = [{"labels": labels[c], "x": x[c]} for c in chunks]
    fixed = [{"old": old[c], "ref": ref[c]} for c in chunks]
    totals = {"tokens": int(mask.sum()), "rows": 5, "scale": 1.0, "dapo_normalizer": float(mask.sum())}
    before = scorer.w.detach().clone()
    loss, _, metrics = update(scorer, optimizer, scheduler, list(scorer.parameters()), batches, chunks, fixed, adv,
                              totals, g, 0.0, Accelerator(cpu=True))

    assert loss == pytest.approx(want.loss.item(), rel=1e-12)
    torch.testing.assert_close(before - scorer.w.detach(), whole.w.grad, rtol=1e-12, atol=1e-14)  # SGD lr 1
    assert metrics["kl"] == pytest.approx(want.metrics["kl"].item(), rel=1e-12)
    assert metrics["clip_ratio"] == pytest.approx(want.metrics["clip_ratio"].item(), rel=1e-12)
    assert 0 < metrics["clip_ratio"] < 1


def test_groups_with_equal_rewards_stay_in_the_loss_unless_dropped():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.5, 0.5, 0.5])
    keep, flat = signal_rows(rewards, 3)
    assert keep == list(range(9)) and flat.tolist() == [True, False, True]
    keep, flat = signal_rows(rewards, 3, drop_flat=True)
    assert keep == [3, 4, 5] and flat.tolist() == [True, False, True]
    assert micro_batches(keep, 2) == [[3, 4], [5]] and micro_batches(keep, None) == [[3, 4, 5]]


def test_dropping_flat_groups_scales_the_update_by_total_over_kept_tokens():
    """TRL and DeepSeekMath keep a flat group (advantage 0) in the token normaliser: its rows
    add no policy gradient but dilute the others'. Dropping it scales the update on the rest
    by total / kept tokens (x1.5 for one group in three of equal length)."""
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.5])  # groups of 2: the second is flat
    adv = group_advantages(rewards, 2)
    logps = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(6, 5, dtype=torch.float64)
    kept = grpo_loss(logps, None, None, adv, mask, beta=0.0)
    (g_keep,) = torch.autograd.grad(kept.loss, [logps])
    rows, _ = signal_rows(rewards, 2, drop_flat=True)
    dropped = grpo_loss(logps[rows], None, None, adv[rows], mask[rows], beta=0.0)
    (g_drop,) = torch.autograd.grad(dropped.loss, [logps])
    torch.testing.assert_close(g_drop[rows], 1.5 * g_keep[rows])
    assert not g_keep[2:4].any()  # the flat group itself adds no policy gradient either way


# ---------------------------------------------------------------- rollouts and scoring on the tiny model

@pytest.fixture(scope="module")
def tiny(world, tiny_dir):
    model, processor = load_backbone(ModelConfig(tiny="qwen2_5_vl", tiny_dir=tiny_dir))
    model.eval()
    records, _ = read_records(world / "grpo_train.jsonl", "grpo")
    media = MediaLoader(SamplingConfig(num_frames=4))
    prompts = [encode_prompt(processor, r.prompt, video=media.video(r.video)) for r in records[:2]]
    eos = [processor.tokenizer.convert_tokens_to_ids("<|im_end|>")]
    return model, processor, prompts, eos


def test_rollouts_run_the_vision_tower_once_per_prompt_and_match_the_pixel_path(tiny):
    model, processor, prompts, eos = tiny
    pad = processor.tokenizer.pad_token_id
    calls = []
    hook = model.model.visual.register_forward_hook(lambda *a: calls.append(1))
    try:
        feats = [encode_visual(model, p, "cpu") for p in prompts]
        assert len(calls) == 2
        g = GrpoConfig(max_new_tokens=6)
        ids, truncated = rollout(model, prompts, feats, g, 3, pad, eos, "cpu", greedy=True)
        assert len(calls) == 2  # the 6 rollouts reuse the 2 prompts' features
    finally:
        hook.remove()
    for p in range(2):
        alone = model.generate(**prompts[p], max_new_tokens=6, do_sample=False, pad_token_id=pad, eos_token_id=eos,
                               suppress_tokens=vision_token_ids(model))[0, prompts[p]["input_ids"].shape[1]:].tolist()
        alone = alone[:alone.index(eos[0]) + 1] if eos[0] in alone else alone
        assert ids[3 * p:3 * p + 3] == [alone] * 3  # left padding and shared features change nothing
    assert truncated == [eos[0] not in x for x in ids]

    torch.manual_seed(0)
    hot = GrpoConfig(max_new_tokens=5, temperature=1.5)
    sampled, truncated = rollout(model, prompts, feats, hot, 4, pad, eos, "cpu")
    assert len(sampled) == 8 and len({tuple(x) for x in sampled}) > 2  # samples differ within a group
    for x, cut in zip(sampled, truncated):
        assert len(x) == 5 if cut else x[-1] == eos[0] and eos[0] not in x[:-1]
        assert not set(x) & set(vision_token_ids(model))


def test_sampled_scorer_is_the_tempered_distribution_shared_prompt_or_not(tiny):
    model, processor, prompts, eos = tiny
    pad = processor.tokenizer.pad_token_id
    torch.manual_seed(1)
    ids, _ = rollout(model, prompts, None, GrpoConfig(max_new_tokens=5), 1, pad, eos, "cpu")
    # groups of unequal completions: 3 + 2 rows, 1 to 6 tokens, ended or cut
    completions = [ids[0], [10, eos[0]], [11, 12, 13, 14, 15, 16], ids[1], [17, 18, eos[0]]]
    seqs = [Sequence(prompts[i // 3], c) for i, c in enumerate(completions)]
    scorer = TokenScorer(model, chunk_size=4, temperature=0.7)
    with torch.no_grad():
        plain = collate_sequences(seqs, pad)
        lp = scorer(plain)["logps"]
        shared = scorer(collate_sequences(seqs, pad, shared_prompt=True))["logps"]
        logits = model(**{k: v for k, v in plain.items() if k != "labels"}).logits[:, :-1].double() / 0.7
    labels = plain["labels"][:, 1:]
    mask = labels != -100
    want = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0] * mask
    torch.testing.assert_close(lp.double(), want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(shared, lp, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- runs

def grpo_stage(world, **grpo):
    return {"name": "grpo", "method": "grpo",
            "data": {"train_file": str(world / "grpo_train.jsonl"), "eval_file": str(world / "grpo_test.jsonl")},
            "grpo": {"num_generations": 4, "max_new_tokens": 4, "eval_records": 4, **grpo}}


def metrics(path: Path) -> list[dict]:
    return [row for _, row in iter_jsonl(path)]


def test_rule_reward_rises_after_a_short_sft(tmp_path, world, tiny_dir, capsys):
    """SFT teaches the random model the world's words; GRPO then raises the sampled rule reward on
    a fixed set of 16 questions: the last epoch's mean over the first epoch's (the same prompts)."""
    subset = tmp_path / "grpo16.jsonl"
    lines = [json.loads(x) for x in (world / "grpo_train.jsonl").read_text().splitlines()[:16]]
    subset.write_text("".join(json.dumps({**r, "video": str(world / r["video"])}) + "\n" for r in lines))
    # A user term that fails on some samples: logged, counted, and (weight 0) without effect.
    (tmp_path / "flaky.py").write_text(textwrap.dedent("""
        def flaky(sample):
            if sample.record_id.endswith("-g0"):
                raise RuntimeError("no luck")
            return float("nan") if sample.record_id.endswith("-g1") else 0.0
    """))
    stage = grpo_stage(world, num_generations=8, num_iterations=2, kl_beta=0.0, rewards=[
        {"name": "answer_match", "weight": 1.0}, {"name": "valid_choice", "weight": 0.5},
        {"name": f"{tmp_path}/flaky.py:flaky", "label": "flaky", "weight": 0.0}])
    stage["data"].update(train_file=str(subset), allow_absolute_paths=True)
    stage["train"] = {"lr": 2e-3, "epochs": 6, "scheduler": "constant"}
    raw = {"output_dir": str(tmp_path / "run"), "model": {"tiny": "qwen2_5_vl", "tiny_dir": tiny_dir},
           "sampling": {"num_frames": 4}, "train": {"batch_size": 4, "seed": 0, "warmup_ratio": 0.0},
           "stages": [{"name": "sft", "method": "sft", "data": {"train_file": str(world / "sft_train.jsonl")},
                       "train": {"lr": 3e-3, "max_steps": 100, "epochs": 10}}, stage]}
    train(build_config(raw))

    run = tmp_path / "run" / "stage1-grpo"
    rows = metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 25))
    epoch = [sum(r["reward"] for r in rows[i:i + 4]) / 4 for i in range(0, 24, 4)]
    assert epoch[-1] > epoch[0] + 0.1 and epoch[-1] > 1.5 * epoch[0], epoch  # measured: 0.20 -> 0.42
    first = rows[0]
    for key in ("rewards/answer_match", "rewards/valid_choice", "rewards/flaky", "advantage_std", "clip_ratio",
                "completion_length", "groups_all_equal", "grad_norm", "lr"):
        assert key in first, key
    assert first["reward"] == pytest.approx(first["rewards/answer_match"] + 0.5 * first["rewards/valid_choice"])

    errors = [e for _, e in iter_jsonl(run / "reward_errors.jsonl")]
    assert errors and {e["term"] for e in errors} == {"flaky"}
    assert {e["record_id"][-3:] for e in errors} == {"-g0", "-g1"}
    assert {e["error"].split(":")[0] for e in errors} == {"RuntimeError", "returned nan"}
    assert sum(r["reward_errors"] for r in rows) == len(errors)

    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 24 and summary["reward_errors"] == len(errors)
    assert (f"grpo         note: {len(errors)} reward-term calls failed and got the fallback reward "
            "(each in reward_errors.jsonl)") in capsys.readouterr().out.splitlines()
    keys = {"reward", "rewards/answer_match", "sampled/reward", "sampled/rewards/valid_choice", "n"}
    assert set(summary["before"]) == set(summary["after"]) >= keys
    from transformers import AutoModelForImageTextToText
    assert AutoModelForImageTextToText.from_pretrained(run / "final").config.model_type == "qwen2_5_vl"


def test_groups_without_signal_change_nothing(tmp_path, world, tiny_dir):
    """A random model never answers right: every group is all zeros, counted, and the weights
    come out exactly as they went in (no gradient, not even the KL's)."""
    raw = {"output_dir": str(tmp_path / "run"), "method": "grpo",
           "model": {"tiny": "qwen2_5_vl", "tiny_dir": tiny_dir}, "sampling": {"num_frames": 4},
           "train": {"batch_size": 2, "max_steps": 2, "lr": 1e-2, "warmup_ratio": 0.0}, **grpo_stage(world)}
    raw.pop("name")
    raw["grpo"]["flat_groups"] = "drop"
    train(build_config(raw))
    rows = metrics(tmp_path / "run" / "metrics.jsonl")
    assert [(r["groups"], r["groups_all_equal"], r.get("no_update")) for r in rows] == [(2, 2, True)] * 2
    from safetensors.torch import load_file
    init = load_file(str(Path(tiny_dir) / "qwen2_5_vl" / "model.safetensors"))
    final = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    assert all(torch.equal(init[k], final[k]) for k in init)


def test_resume_repeats_the_uninterrupted_run(tmp_path, world, tiny_dir, monkeypatch):
    """A run stopped after step 3 (its checkpoint at step 2) and resumed logs the same steps 3-4
    as a run that never stopped: data order, sampling RNG, optimizer and reference all restored."""
    import mmalign.train.grpo as grpo

    def raw(name):
        out = {"output_dir": str(tmp_path / name), "method": "grpo",
               "model": {"tiny": "qwen2_5_vl", "tiny_dir": tiny_dir}, "sampling": {"num_frames": 4},
               "train": {"batch_size": 2, "max_steps": 4, "save_every": 2, "lr": 1e-3, "warmup_ratio": 0.0},
               **grpo_stage(world, kl_beta=0.04, rewards=[{"name": "instruction_adherence", "max_words": 2}])}
        out.pop("name")
        return out

    train(build_config(raw("a")))
    expected = metrics(tmp_path / "a" / "metrics.jsonl")
    assert any(not r.get("no_update") for r in expected)  # gibberish varies in length: there is signal

    class Stop(Exception):
        pass

    real = grpo.append_jsonl

    def stop_after_step_3(path, row):
        real(path, row)
        if path.name == "metrics.jsonl" and row["step"] == 3:
            raise Stop

    monkeypatch.setattr(grpo, "append_jsonl", stop_after_step_3)
    with pytest.raises(Stop):
        train(build_config(raw("b")))
    monkeypatch.setattr(grpo, "append_jsonl", real)
    train(build_config(raw("b")), resume=True)
    resumed = metrics(tmp_path / "b" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    for a, b in zip(expected, resumed):
        assert a.keys() == b.keys()
        for key in {"reward", "loss", "grad_norm", "kl", "completion_length"} & a.keys():
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), (a["step"], key)


def test_a_reward_term_no_record_can_feed_is_refused_before_training(tmp_path, monkeypatch, capsys):
    """GRPO lines in TRL's conversational format whose reference answer is named `solution`
    (as TRL's GRPO datasets name it): answer_match failed on every completion, every reward was
    the fallback 0, and the run exited 0 having learned nothing. Now it is refused before
    anything is written, with the column to rename; records with an `answer` train."""
    from mmalign.cli import main

    monkeypatch.chdir(tmp_path)
    prompt = [{"role": "user", "content": "Is the sky blue?"}]
    (tmp_path / "g.jsonl").write_text("".join(json.dumps({"prompt": prompt, "solution": a}) + "\n" for a in ("yes", "no")))
    (tmp_path / "c.yaml").write_text(f"method: grpo\noutput_dir: run\nmodel: {{tiny: qwen2_5_vl, tiny_dir: {tmp_path / 'tiny'}}}\n"
                                     "data: {train_file: g.jsonl}\ntrain: {max_steps: 1, batch_size: 2}\n"
                                     "grpo: {num_generations: 2, max_new_tokens: 2}\n")
    assert main(["train", "c.yaml"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "mmalign: error: grpo.rewards: answer_match fails on every record of data.train_file before any completion "
        "(ValueError: the record has no 'answer'): TRL's GRPO datasets often name it 'solution' (here in each "
        "record's meta); rename it 'answer'")
    assert not (tmp_path / "run").exists()
    (tmp_path / "g.jsonl").write_text((tmp_path / "g.jsonl").read_text().replace('"solution"', '"answer"'))
    assert main(["train", "c.yaml"]) == 0


def test_video_r1_data_trains_with_its_accuracy_reward(tmp_path, world, monkeypatch, capsys):
    """`mmalign train` with GRPO on a Video-R1-260k file (one JSON array, `path`s under the data
    root, data.media_dir), rewarded by video_r1_accuracy and the format term: the file was
    refused line by line. Its accuracy term reads each record's problem type; a record of an
    unknown type would fail on every record and is refused before training."""
    from mmalign.cli import main

    monkeypatch.chdir(tmp_path)
    shutil.copytree(world / "videos", tmp_path / "Video-R1-data" / "videos")
    lines = [{"problem_id": i, "problem": "How many shapes move?", "data_type": "video", "problem_type": "numerical",
              "solution": "<answer>2</answer>", "path": f"./videos/vid000{i}.mp4"} for i in range(2)]
    (tmp_path / "Video-R1-260k.json").write_text(json.dumps(lines, indent=2))
    (tmp_path / "c.yaml").write_text(
        f"method: grpo\noutput_dir: run\nmodel: {{tiny: qwen2_5_vl, tiny_dir: {tmp_path / 'tiny'}}}\n"
        "data: {train_file: Video-R1-260k.json, media_dir: Video-R1-data}\nsampling: {num_frames: 4}\n"
        "train: {max_steps: 1, batch_size: 2}\n"
        "grpo: {num_generations: 2, max_new_tokens: 4, rewards: [{name: video_r1_accuracy}, {name: format}]}\n")
    assert main(["train", "c.yaml"]) == 0
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert 0.0 <= row["rewards/video_r1_accuracy"] <= 1.0 and 0.0 <= row["rewards/format"] <= 1.0, row
    capsys.readouterr()
    (tmp_path / "Video-R1-260k.json").write_text(json.dumps([{**r, "problem_type": "free-form"} for r in lines]))
    try:
        import rouge_score  # noqa: F401
    except ImportError:  # without rouge-score, a free-form record cannot be scored
        assert main(["train", "c.yaml", "output_dir=run2"]) == 2
        assert "video_r1_accuracy fails on every record" in capsys.readouterr().err
