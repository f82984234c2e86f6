"""Checkpoints that from_pretrained would answer with a traceback get one line naming the key."""

import json
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

from mmalign.config import ConfigError, ModelConfig
from mmalign.models.backbone import load_backbone


@pytest.fixture
def ckpt(tmp_path, tiny_dir):
    from mmalign.models.backbone import model_path

    folder = tmp_path / "ckpt"
    shutil.copytree(model_path(ModelConfig(tiny="qwen2_5_vl", tiny_dir=tiny_dir)), folder)
    return folder


def test_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.path: .*nope: no such folder"):
        load_backbone(ModelConfig(path=str(tmp_path / "nope")))


def test_pickle_only_weights_are_refused(ckpt):
    (ckpt / "model.safetensors").rename(ckpt / "pytorch_model.bin")
    with pytest.raises(ConfigError, match=r"no \*\.safetensors weights \(only pickle files: pytorch_model\.bin"):
        load_backbone(ModelConfig(path=str(ckpt)))


def test_a_torn_safetensors_file(ckpt):
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(ConfigError, match=r"model\.safetensors: not a readable safetensors file"):
        load_backbone(ModelConfig(path=str(ckpt)))


@pytest.mark.parametrize("remove, what", [(("processor_config.json",), "processor"),
                                          (("tokenizer.json", "tokenizer_config.json"), "tokenizer")])
def test_a_checkpoint_without_its_processor_or_tokenizer_is_refused_by_name(ckpt, remove, what):
    """A weights-only copy: AutoProcessor failed after the run had claimed its folder."""
    for name in remove:
        (ckpt / name).unlink()
    with pytest.raises(ConfigError, match=rf"model\.path: .*ckpt: no {what} files \("):
        load_backbone(ModelConfig(path=str(ckpt)))


def test_a_vision_language_model_as_the_text_judge_is_one_line_before_the_run(ckpt, tmp_path, monkeypatch, capsys):
    """rrpo_qa.judge_model is loaded with AutoModelForCausalLM, which does not take a Qwen2.5-VL:
    its traceback came after the pairs run had claimed its progress folder."""
    from mmalign.cli import main
    from mmalign.world import build_world

    monkeypatch.chdir(tmp_path)
    build_world("w", n_videos=2, show_progress=False)
    config = Path(__file__).resolve().parents[2] / "configs" / "pairs" / "rrpo_qa.yaml"
    assert main(["pairs", "--videos", "w/videos", "--config", str(config), "--out", "p.jsonl", f"model.path={ckpt}",
                 "rrpo_qa.judge=model", f"rrpo_qa.judge_model={ckpt}"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mmalign: error: rrpo_qa.judge_model: {ckpt}: model type 'qwen2_5_vl' is not a text chat model "
        "(AutoModelForCausalLM does not load it); name a text LLM such as Qwen2.5-7B-Instruct")
    assert not (tmp_path / "p.jsonl.parts").exists()


def test_custom_code_needs_trust_remote_code(ckpt):
    config = json.loads((ckpt / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_x.X"}
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"auto_map.*model\.trust_remote_code=true"):
        load_backbone(ModelConfig(path=str(ckpt)))


def test_the_cli_says_it_in_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    (tmp_path / "d.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    cfg.write_text(f"method: dpo\noutput_dir: {tmp_path / 'run'}\nmodel: {{path: {tmp_path / 'nope'}}}\n"
                   f"data: {{train_file: {tmp_path / 'd.jsonl'}}}\n")
    out = subprocess.run([sys.executable, "-m", "mmalign.cli", "train", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"mmalign: error: model.path: {tmp_path / 'nope'}: no such folder"]
    assert not (tmp_path / "run").exists()  # a start that fails its checks claims no output folder


@pytest.mark.parametrize("body, message", [
    ("model: {}\ndata: {train_file: d.jsonl}\n", "model: set model.path (a checkpoint folder) or model.tiny (an offline preset)"),
    ("model: {tiny: qwen2_5_vl}\n", "data.train_file: not set (a JSONL of dpo records)"),
    ("model: {tiny: qwen2_5_vl}\ndata: {train_file: nope.jsonl}\n", "data.train_file: nope.jsonl: file not found"),
    ("model: {tiny: qwen2_5_vl}\ndata: {train_file: .}\n",
     "data.train_file: .: a folder, not a record file (a glob such as *.jsonl reads the files in it)"),
    # The second stage's eval file was read after the first stage had trained, in a claimed folder.
    ("model: {tiny: qwen2_5_vl}\nstages:\n  - {name: a, data: {train_file: d.jsonl}}\n"
     "  - {name: b, data: {train_file: d.jsonl, eval_file: nope.jsonl}}\n",
     "stage b: data.eval_file: nope.jsonl: file not found"),
    # A curriculum over records without a difficulty: a ValueError traceback when b began, after a had trained.
    ("model: {tiny: qwen2_5_vl}\nstages:\n  - {name: a, data: {train_file: d.jsonl}}\n"
     "  - {name: b, data: {train_file: d.jsonl, curriculum: ordered}}\n",
     "stage b: data.curriculum=ordered orders records by their `difficulty`, and 1 of the 1 have none (the first: "
     "d.jsonl:1); give every record one, or set data.curriculum=shuffle"),
])
def test_missing_model_or_data_is_one_line_and_claims_nothing(tmp_path, body, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"method: dpo\noutput_dir: {tmp_path / 'run'}\n" + body)
    (tmp_path / "d.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    out = subprocess.run([sys.executable, "-m", "mmalign.cli", "train", str(cfg)], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"mmalign: error: {message}"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("rewards, key", [
    ("[{name: reward_model, path: rm}]", "grpo.rewards[0].path"),
    ("[{name: hybrid, open: reward_model, open_options: {path: rm}}]", "grpo.rewards[0].open_options.path"),
])
def test_a_reward_model_that_is_not_there_stops_the_run_before_anything_trains(tmp_path, monkeypatch, capsys,
                                                                               rewards, key):
    """A GRPO stage's reward model missing: the SFT stage before it trained, then every completion's
    reward failed, got the fallback 0, and the run trained on nothing from it, exit 0."""
    from mmalign.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sft.jsonl").write_text('{"prompt": "p", "response": "a"}\n')
    (tmp_path / "grpo.jsonl").write_text('{"prompt": "p", "answer": "a"}\n')
    (tmp_path / "c.yaml").write_text("output_dir: run\nmodel: {tiny: qwen2_5_vl}\nstages:\n"
                                     "  - {name: sft, method: sft, data: {train_file: sft.jsonl}}\n"
                                     "  - {name: grpo, method: grpo, data: {train_file: grpo.jsonl}}\n")
    assert main(["train", "c.yaml", f"stages.grpo.grpo.rewards={rewards}"]) == 2
    assert capsys.readouterr().err.strip() == f"mmalign: error: stage grpo: {key}: rm: no such folder"
    assert not (tmp_path / "run").exists()

    # A causal LM where a reward model belongs: AutoModelForSequenceClassification gave it a random
    # head (transformers only warns), and GRPO trained on noise.
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=2, vocab_size=64)).save_pretrained("rm")
    capsys.readouterr()
    assert main(["train", "c.yaml", f"stages.grpo.grpo.rewards={rewards}"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mmalign: error: stage grpo: {key}: rm: its architectures ['LlamaForCausalLM'] have no sequence-classification "
        "head, which would start random (every reward noise); name a reward model (an *ForSequenceClassification "
        "checkpoint)")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("eval_line, extra, said", [
    ('{"prompt": "p", "response": "a"}', "", "no usable records (1 skipped): top reasons:"),  # SFT records, a DPO stage
    ('{"prompt": "p", "chosen": "a", "rejected": "b"}', "difficulty_min: 0.5, ",
     "no record within data.difficulty_min / difficulty_max"),
])
def test_an_eval_file_with_no_usable_record_is_refused_not_replaced_by_training_records(tmp_path, monkeypatch, capsys,
                                                                                       eval_line, extra, said):
    """The stage measured before/after on its training records instead, and its note asked to set
    data.eval_file, which was set."""
    from mmalign.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b", "difficulty": 0.9}\n')
    (tmp_path / "e.jsonl").write_text(eval_line + "\n")
    (tmp_path / "c.yaml").write_text("method: dpo\noutput_dir: run\nmodel: {tiny: qwen2_5_vl}\n"
                                     f"data: {{train_file: d.jsonl, eval_file: e.jsonl, {extra}}}\n")
    assert main(["train", "c.yaml"]) == 2
    assert capsys.readouterr().err.startswith(f"mmalign: error: data.eval_file: e.jsonl: {said}")
    assert not (tmp_path / "run").exists()


def test_a_later_stages_unusable_records_stop_the_run_before_any_stage_trains(tmp_path, capsys):
    """Stage b's records all unusable (or, with data.strict, one bad line): the run stopped only
    when b began, after a had trained, in a claimed folder. Now nothing is written; and a
    one-stage run whose file is then mended starts without --resume (its claimed folder, with
    the old file's digest, refused the mended file even with --resume)."""
    from mmalign.cli import main

    good = tmp_path / "sft.jsonl"
    good.write_text("".join(f'{{"prompt": "p{i}", "response": "a"}}\n' for i in range(4)))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a"}\n')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"output_dir: {tmp_path / 'run'}\nmodel: {{tiny: qwen2_5_vl, tiny_dir: {tmp_path / 'tiny'}}}\n"
                   "train: {max_steps: 1, batch_size: 2}\nstages:\n"
                   f"  - {{name: a, method: sft, data: {{train_file: {good}}}}}\n"
                   f"  - {{name: b, method: dpo, data: {{train_file: {bad}}}}}\n")
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mmalign: error: stage b: data.train_file: {bad}: no usable records (1 skipped)")
    assert "missing required field 'rejected'" in err
    bad.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p"}\n')
    assert main(["train", str(cfg), "data.strict=true"]) == 2
    assert capsys.readouterr().err.startswith(f"mmalign: error: {bad}:2: ")
    assert not (tmp_path / "run").exists()

    one = tmp_path / "one.yaml"
    one.write_text(f"output_dir: {tmp_path / 'run'}\nmethod: dpo\n"
                   f"model: {{tiny: qwen2_5_vl, tiny_dir: {tmp_path / 'tiny'}}}\ntrain: {{max_steps: 1, batch_size: 2}}\ndata: {{train_file: {bad}, strict: true}}\n")
    assert main(["train", str(one)]) == 2
    assert not (tmp_path / "run").exists()
    bad.write_text("".join(f'{{"prompt": "{p}", "chosen": "a", "rejected": "b"}}\n' for p in "pq"))  # mended in place
    assert main(["train", str(one)]) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stages"]["dpo"]["steps"] == 1


@pytest.mark.parametrize("plan", [True, False], ids=["plan", "train"])
def test_a_hub_id_the_hub_does_not_give_is_one_line_and_claims_nothing(tmp_path, plan):
    """A hub id with no hub (offline here; elsewhere, no such repo): transformers' page-long
    OSError was printed as it was, after the run had claimed its folder; `--plan` on a missing
    local folder said the path was a bad repo id."""
    import os

    (tmp_path / "sft.jsonl").write_text('{"prompt": "p", "response": "a"}\n')
    (tmp_path / "rrpo.jsonl").write_text('{"prompt": "p", "chosen": "a b", "rejected": "a c", "chosen_spans": [[2, 3]], '
                                         '"rejected_spans": [[2, 3]]}\n')
    staged = [f"stages.{s}.data.{k}={tmp_path / (s + '.jsonl') if k == 'train_file' else 'null'}"
              for s in ("sft", "rrpo") for k in ("train_file", "eval_file")]

    def train(model):
        config = Path(__file__).resolve().parents[2] / "configs/quickstart.yaml"
        argv = [sys.executable, "-m", "mmalign.cli", "train", str(config), "model.tiny=null", "world.enabled=false",
                f"output_dir={tmp_path / 'run'}", *staged, f"model.path={model}", *(["--plan"] if plan else [])]
        out = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"})
        return out.returncode, out.stderr.strip().splitlines()

    code, err = train("mmalign-tests/no-such-model")
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("mmalign: error: model.path: mmalign-tests/no-such-model: no local folder, and the hub "
                             "did not give it (") and err[0].endswith("); download it and set model.path to its folder")
    assert train(tmp_path / "nope") == (2, [f"mmalign: error: model.path: {tmp_path / 'nope'}: no such folder"])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("items, stage", [
    (["lora.enabled=true", "lora.target_modules=[qproj]"], "sft"),
    (["lora.enabled=true", "stages.rrpo.lora.target_modules=[visual]"], "rrpo"),  # the vision side is excluded
])
def test_lora_targets_that_name_no_module_are_one_line_before_anything_is_claimed(tmp_path, tiny_dir, capsys, items,
                                                                                stage, monkeypatch):
    """peft said "No modules were targeted for adaptation" in a traceback, after the run had
    claimed output_dir (its mended rerun then needed --resume, which refused the new targets)."""
    from mmalign.cli import main

    monkeypatch.chdir(tmp_path)  # the quickstart's world and record files: tmp_path/data/world, made by the run
    config = Path(__file__).resolve().parents[2] / "configs/quickstart.yaml"
    args = ["train", str(config), f"model.tiny_dir={tiny_dir}", f"output_dir={tmp_path / 'run'}", *items]
    assert main(args) == 2
    target = items[1].split("=")[1][1:-1]
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"mmalign: error: stage {stage}: lora.target_modules: ['{target}'] name no module of "
        "Qwen2_5_VLForConditionalGeneration outside lora.exclude_modules; its language-model linear layers: "
        "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj")
    assert not (tmp_path / "run").exists()


def test_a_hub_id_with_the_hub_out_of_reach_is_refused_at_once(tmp_path, capsys, monkeypatch):
    """Without HF_HUB_OFFLINE, an unreachable hub was found by transformers' retries: 28 s here
    before the one line. A socket that cannot connect stands in for the missing network."""
    import socket

    from huggingface_hub import constants

    from mmalign.cli import main

    def no_network(address, timeout=None, *args, **kwargs):
        assert address == ("huggingface.co", 443) and timeout == 3
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.chdir(tmp_path)  # the quickstart's world would be built here: it must not be, before the check
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://huggingface.co")
    monkeypatch.setattr(socket, "create_connection", no_network)
    config = Path(__file__).resolve().parents[2] / "configs/quickstart.yaml"
    assert main(["train", str(config), "model.path=mmalign-tests/no-such-model", f"output_dir={tmp_path / 'run'}",
                 "--plan"]) == 2
    assert capsys.readouterr().err.strip() == (
        "mmalign: error: model.path: mmalign-tests/no-such-model: no local folder, not in the hub cache, and the hub "
        "(huggingface.co) cannot be reached (Name or service not known); download it and set model.path to its folder")
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize("command", ["train", "pairs", "eval"])
def test_a_text_only_checkpoint_is_one_line_before_anything_is_claimed(tmp_path, monkeypatch, capsys, command):
    """model.path at a text-only LLM (Qwen2.5-7B-Instruct for Qwen2.5-VL-7B-Instruct): transformers'
    page-long 'Unrecognized configuration class' traceback, after the run had claimed its folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from mmalign.cli import main
    from mmalign.world import build_world

    monkeypatch.chdir(tmp_path)
    LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=2, vocab_size=64)).save_pretrained("llm")
    build_world("w", n_videos=4, show_progress=False)
    root = Path(__file__).resolve().parents[2] / "configs"
    (tmp_path / "c.yaml").write_text("method: dpo\noutput_dir: run\ndata: {train_file: w/pairs_train.jsonl}\n")
    argv = {"train": ["train", "c.yaml"],
            "pairs": ["pairs", "--videos", "w/videos", "--config", str(root / "pairs/rrpo_qa.yaml"),
                      "--out", "run/pairs.jsonl"],
            "eval": ["eval", "--config", str(root / "eval/synthetic.yaml"), "output_dir=run", "world.out=w",
                     "world.n_videos=4", "name=llm"]}[command]
    capsys.readouterr()  # save_pretrained's progress bar
    assert main([*argv, "model.path=llm"]) == 2
    line = capsys.readouterr().err.strip()
    assert line.endswith("model.path: llm: model type 'llama' is not a vision-language backbone mmalign trains "
                         "(supported: qwen2_vl, qwen2_5_vl, qwen3_vl, qwen3_5, glm4v, llava, llava_next_video, "
                         "llava_onevision, internvl, smolvlm); for a text-only LLM, name its vision-language "
                         "checkpoint instead (Qwen2.5-VL-7B-Instruct, not Qwen2.5-7B-Instruct)")
    assert "\n" not in line and not (tmp_path / "run").exists()


def test_a_world_too_small_for_a_later_stage_stops_the_quickstart_before_it_trains(tmp_path, monkeypatch, capsys):
    """`mmalign train configs/quickstart.yaml world.n_videos=1`: the world the run builds has no
    test pairs for the rrpo stage's data.eval_file. Its files were checked only when that stage
    began, after SFT had trained, in a claimed folder that the rerun with a mended world.n_videos
    could not --resume (other settings). Now the world is built and its files checked before
    anything is claimed."""
    from mmalign.cli import main

    monkeypatch.chdir(tmp_path)
    quickstart = Path(__file__).parents[2] / "configs" / "quickstart.yaml"
    assert main(["train", str(quickstart), "world.n_videos=1", f"model.tiny_dir={tmp_path / 'tiny'}"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (  # after the world's progress bar
        "mmalign: error: stage rrpo: data.eval_file: data/world/pairs_test.jsonl: holds no record (written by the "
        "world of world.n_videos=1: too few videos for it?)")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "tiny").exists()  # no stage began


def test_plan_refuses_what_the_run_refuses_in_the_world_it_builds(tmp_path, monkeypatch, capsys):
    """`mmalign train configs/quickstart.yaml --plan world.n_videos=1` printed a plan (exit 0) for
    a run that refuses to start: the world's files were checked by the run, not by the plan. A
    file of the user's own that merely lies in the world's folder gets no "too few videos" hint:
    the world did not write it."""
    from mmalign.cli import main

    monkeypatch.chdir(tmp_path)
    quickstart = Path(__file__).parents[2] / "configs" / "quickstart.yaml"
    tiny = f"model.tiny_dir={tmp_path / 'tiny'}"
    assert main(["train", str(quickstart), "--plan", "world.n_videos=1", tiny]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "mmalign: error: stage rrpo: data.eval_file: data/world/pairs_test.jsonl: holds no record (written by the "
        "world of world.n_videos=1: too few videos for it?)")
    (tmp_path / "data" / "world" / "mine.jsonl").write_text('{"id": "x", "prompt": "p"}\n')
    for plan in (["--plan"], []):
        assert main(["train", str(quickstart), *plan, "world.n_videos=4", tiny,
                     "stages.rrpo.data.train_file=data/world/mine.jsonl"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-2:] == ["mmalign: error: stage rrpo: data.train_file: data/world/mine.jsonl: no usable records "
                            "(1 skipped): top reasons:",
                            "  1 x missing required field 'chosen' (a pair record needs prompt, chosen, rejected)"], err
    assert not (tmp_path / "runs").exists()


def test_the_too_few_videos_hint_is_only_for_files_the_world_wrote(tmp_path):
    """One rule for `mmalign train` and a pipeline's steps (the pipeline gave the hint for a
    user's own file that merely lies in the world's folder)."""
    from mmalign.config import WorldConfig
    from mmalign.train.run import world_too_small

    world = WorldConfig(enabled=True, out=str(tmp_path / "w"), n_videos=1)
    hint = " (written by the world of world.n_videos=1: too few videos for it?)"
    assert world_too_small(world, (str(tmp_path / "w" / "pairs_test.jsonl"), None)) == hint
    assert world_too_small(world) == hint  # an eval step's benchmark files
    assert world_too_small(world, (str(tmp_path / "w" / "pairs_train.jsonl"), str(tmp_path / "w" / "mine.jsonl"))) == ""
    assert world_too_small(world, (str(tmp_path / "elsewhere.jsonl"),)) == hint
