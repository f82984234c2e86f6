"""`mmalign train --plan`: token counts from file headers and the processor's grid rules equal
the real processor's counts, on every tiny family, with videos and with images."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from mmalign.config import build_config, stages_of
from mmalign.data.encode import RecordDataset
from mmalign.data.records import read_records
from mmalign.models.backbone import family_of, load_backbone
from mmalign.train.plan import plan, record_lengths


def image_records(tmp_path, world):
    from mmalign.data.video import load_video

    frames = load_video(next((world / "videos").glob("*.mp4")), num_frames=2).frames
    rows = []
    for i, f in enumerate(frames):
        Image.fromarray(np.kron(f, np.ones((3, 5, 1), np.uint8))).save(tmp_path / f"im{i}.png")  # 192 x 320
        rows.append({"id": f"i{i}", "images": [f"im{i}.png"], "prompt": "What is there?", "chosen": "A red circle.",
                     "rejected": "A blue square moves left."})
    path = tmp_path / "images.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.mark.parametrize("tiny, media", [("qwen2_5_vl", "video"), ("qwen2_vl", "video"), ("llava_next_video", "video"),
                                         ("qwen3_vl", "video"), ("llava_onevision", "video"), ("internvl", "video"),
                                         ("qwen2_5_vl", "images"), ("llava", "images"), ("qwen3_vl", "images"),
                                         ("llava_onevision", "images"), ("internvl", "images")])
def test_the_estimate_equals_the_processors_count(tmp_path, world, tiny_dir, tiny, media):
    train_file = world / "pairs_train.jsonl" if media == "video" else image_records(tmp_path, world)
    raw = {"method": "dpo", "model": {"tiny": tiny, "tiny_dir": tiny_dir}, "data": {"train_file": str(train_file)},
           "sampling": {"num_frames": 6, "max_pixels": 3000}}
    (_, cfg), = stages_of(build_config(raw))
    model, processor = load_backbone(cfg.model)
    records, _ = read_records(train_file, "pair")
    records = records[:4]
    family = family_of(model)
    lengths = record_lengths(records, processor, family, cfg)
    dataset = RecordDataset(records, processor, family, "dpo", cfg.data, cfg.sampling)
    for i, est in enumerate(lengths):
        ex = dataset[i]
        assert [len(s) for s in ex.sequences] == [est.prompt + r for r in est.responses], records[i].source
        assert est.media > 0


def test_plan_reports_the_records_over_max_length(world, tiny_dir):
    raw = {"method": "dpo", "model": {"tiny": "qwen2_5_vl", "tiny_dir": tiny_dir},
           "data": {"train_file": str(world / "pairs_train.jsonl"), "max_length": 70}, "sampling": {"num_frames": 4}}
    report = plan(build_config(raw))["dpo"]
    over = report["over_max_length"]
    assert 0 < over < report["records"] and report["tokens"]["max"] > 70
    assert report["activation_gib_per_micro_batch"] > 0


def test_plan_token_percentiles_are_nearest_rank(tmp_path, world, tiny_dir):
    """p90 is the smallest length that at least 90% of the records reach or stay under: on two
    records, the longer. It was the element at floor(0.9 (n - 1)), the shorter one, printed
    below the median."""
    lines = (world / "pairs_train.jsonl").read_text().splitlines()
    shutil.copytree(world / "videos", tmp_path / "videos")
    for n in (2, 7):
        path = tmp_path / f"pairs{n}.jsonl"
        path.write_text("\n".join(lines[:n]) + "\n")
        raw = {"method": "dpo", "model": {"tiny": "qwen2_5_vl", "tiny_dir": tiny_dir},
               "data": {"train_file": str(path)}, "sampling": {"num_frames": 4}}
        (_, cfg), = stages_of(build_config(raw))
        model, processor = load_backbone(cfg.model)
        records, _ = read_records(path, "pair")
        lengths = sorted(x.longest for x in record_lengths(records, processor, family_of(model), cfg))
        assert len(set(lengths)) > 1  # the check below means nothing on equal lengths
        share_at_or_under = lambda v: sum(x <= v for x in lengths) / n
        p90 = min(v for v in lengths if share_at_or_under(v) >= 0.9)
        tokens = plan(build_config(raw))["dpo"]["tokens"]
        assert tokens == {"min": lengths[0], "median": float(np.median(lengths)), "p90": p90, "max": lengths[-1]}
        assert tokens["p90"] >= tokens["median"]


def test_training_skips_records_over_max_length_before_it_starts(tmp_path, world, tiny_dir):
    from mmalign.train.run import train

    raw = {"output_dir": str(tmp_path / "run"), "method": "dpo", "model": {"tiny": "qwen2_5_vl", "tiny_dir": tiny_dir},
           "data": {"train_file": str(world / "pairs_train.jsonl"), "max_length": 70}, "sampling": {"num_frames": 4},
           "train": {"batch_size": 2, "max_steps": 1, "lr": 1e-4}}
    expected = plan(build_config(raw))["dpo"]["over_max_length"]
    summary = train(build_config(raw))["dpo"]
    before = [s for s in summary["skipped_records"] if "found before training" in s["reason"]]
    assert len(before) == expected > 0


def test_each_distinct_prompt_is_rendered_once(world, tiny_dir, monkeypatch):
    """Datasets repeat their prompts ("Describe the video." on every caption): planning renders
    the chat template once per distinct prompt and media shape, not once per record (80k records
    of the harness's pretraining mix: 15 s -> 3 s), and counts the same tokens."""
    from mmalign.train.plan import video_shape

    train_file = world / "pairs_train.jsonl"
    raw = {"method": "dpo", "model": {"tiny": "qwen2_5_vl", "tiny_dir": tiny_dir},
           "data": {"train_file": str(train_file)}, "sampling": {"num_frames": 4}}
    (_, cfg), = stages_of(build_config(raw))
    model, processor = load_backbone(cfg.model)
    family = family_of(model)
    records, _ = read_records(train_file, "pair")
    once = record_lengths(records, processor, family, cfg)
    renders = []
    real = processor.apply_chat_template
    monkeypatch.setattr(processor, "apply_chat_template", lambda *a, **k: renders.append(1) or real(*a, **k))
    thrice = record_lengths(records * 3, processor, family, cfg)
    assert [(x.prompt, x.media, x.responses) for x in thrice] == [(x.prompt, x.media, x.responses) for x in once] * 3
    shapes = {video_shape(r.video, cfg.sampling) for r in records}
    assert len(renders) <= len({r.prompt for r in records}) + 2 * len(shapes) < len(records)


def test_a_record_s_own_system_message_is_the_one_its_prompt_is_encoded_with(tmp_path, world, tiny_dir):
    """TRL's and LLaMA-Factory's lines carry their system message in the data; it went to meta and
    every prompt was encoded with data.system_prompt (or the template's default) instead. Now a
    record's own system message is its prompt's; data.system_prompt serves the records without
    one; and the plan counts the tokens of the prompt that is encoded."""
    from mmalign.models.backbone import encode_prompt

    rows = [json.loads(line) for line in (world / "pairs_train.jsonl").read_text().splitlines()[:2]]
    trl = {"video": rows[0]["video"], "chosen": rows[0]["chosen"], "rejected": rows[0]["rejected"],
           "prompt": [{"role": "system", "content": "Answer in one short sentence."},
                      {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": rows[0]["prompt"]}]}]}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(trl) + "\n" + json.dumps({k: rows[1][k] for k in ("video", "prompt", "chosen",
                                                                                   "rejected")}) + "\n")
    shutil.copytree(world / "videos", tmp_path / "videos")
    raw = {"method": "dpo", "model": {"tiny": "qwen2_5_vl", "tiny_dir": tiny_dir},
           "data": {"train_file": str(path), "system_prompt": "Describe only what you see."},
           "sampling": {"num_frames": 4}}
    (_, cfg), = stages_of(build_config(raw))
    model, processor = load_backbone(cfg.model)
    records, _ = read_records(path, "pair")
    dataset = RecordDataset(records, processor, family_of(model), "dpo", cfg.data, cfg.sampling)
    video = lambda i: dataset.media.video(records[i].video)
    for i, system in ((0, "Answer in one short sentence."), (1, "Describe only what you see.")):
        ids = dataset[i].sequences[0].prompt["input_ids"]
        assert ids.tolist() == encode_prompt(processor, records[i].prompt, video=video(i), system=system)["input_ids"].tolist()
        assert ids.tolist() != encode_prompt(processor, records[i].prompt, video=video(i))["input_ids"].tolist()
    lengths = record_lengths(records, processor, family_of(model), cfg)
    assert [x.prompt for x in lengths] == [dataset[i].sequences[0].prompt["input_ids"].shape[1] for i in range(2)]
