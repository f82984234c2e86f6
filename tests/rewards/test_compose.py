"""The configured reward: weighted sums, per-sample fallbacks, start-up errors, user terms."""

import logging
import math
import sys
import textwrap

import pytest

from mmalign.config import ConfigError, build_config
from mmalign.rewards import REGISTRY, RewardConfigError, RewardSet, Sample, known_rewards, reward


@pytest.fixture(autouse=True)
def registry():
    """Terms registered by a test are gone after it."""
    before = dict(REGISTRY)
    yield
    REGISTRY.clear()
    REGISTRY.update(before)


def samples(*completions, answer="yes", ids=None):
    ids = ids or [f"r{i}" for i in range(len(completions))]
    return [Sample(prompt="q", completion=c, answer=answer, record_id=i, truth={"choices": ["yes", "no"]},
                   num_tokens=len(c.split()) + 1) for c, i in zip(completions, ids)]


def test_weighted_sum_and_raw_per_term_values():
    rs = RewardSet.from_config([{"name": "answer_match", "weight": 2.0},
                                {"name": "valid_choice", "weight": 0.5},
                                {"name": "length_penalty", "weight": -1.0, "correct_term": "answer_match"}])
    out = rs(samples("yes", "no", "yes it is", "maybe"), group_size=2)
    assert out.terms["answer_match"] == [1.0, 0.0, 0.0, 0.0]
    assert out.terms["valid_choice"] == [1.0, 1.0, 0.0, 0.0]
    # group 1 lengths 2, 2 -> 0, 0; group 2 has no correct sample -> 0, 0
    assert out.terms["length_penalty"] == [0.0, 0.0, 0.0, 0.0]
    assert out.total.tolist() == [2.5, 0.5, 0.0, 0.0]
    m = out.metrics()
    assert m["reward"] == pytest.approx(0.75) and m["rewards/answer_match"] == 0.25 and m["reward_errors"] == 0
    assert m["reward_std"] == pytest.approx(math.sqrt(((1.75 ** 2) + 0.25 ** 2 + 2 * 0.75 ** 2) / 3))


def flaky(sample: Sample) -> float:
    if sample.completion == "boom":
        raise RuntimeError("kaboom")
    return float("nan") if sample.completion == "nan" else 1.0


def test_a_failing_sample_gets_the_fallback_and_is_logged_with_its_record(caplog):
    reward("test_flaky")(flaky)
    rs = RewardSet.from_config([{"name": "test_flaky", "weight": 1.0}, {"name": "answer_match", "weight": 1.0}],
                               fallback=-0.5)
    with caplog.at_level(logging.WARNING, logger="mmalign.rewards"):
        out = rs(samples("ok", "boom", "nan", "yes", ids=["a", "b", "c", "d"]), group_size=2)
    assert out.terms["test_flaky"] == [1.0, -0.5, -0.5, 1.0]
    assert out.total.tolist() == [1.0, -0.5, -0.5, 2.0]  # the other term still counts
    assert [(e["record_id"], e["index"]) for e in out.errors] == [("b", 1), ("c", 0)]
    assert "kaboom" in out.errors[0]["error"] and "nan" in out.errors[1]["error"]
    assert out.metrics()["reward_errors"] == 2 and out.metrics()["reward_errors/test_flaky"] == 2
    # The term's first failure is printed, its later ones counted (thousands of lines a run, before)
    assert "record b" in caplog.text and "record c" not in caplog.text
    assert "later failures are counted (reward_errors/test_flaky in metrics.jsonl)" in caplog.text


def test_per_term_fallback_and_bad_group_output():
    @reward("test_short_group", scope="group")
    def short(group):
        return [1.0]  # one value for a group of two

    reward("test_flaky")(flaky)
    rs = RewardSet.from_config([{"name": "test_short_group", "fallback": 0.25}, {"name": "test_flaky", "label": "f2"}],
                               fallback=9.0)
    out = rs(samples("ok", "boom"), group_size=2)
    assert out.terms["test_short_group"] == [0.25, 0.25]  # the term's own fallback
    assert out.terms["f2"] == [1.0, 9.0]                  # the global one
    assert "returned 1 values for a group of 2" in out.errors[0]["error"]


def test_unknown_name_fails_with_the_known_names():
    with pytest.raises(RewardConfigError) as e:
        RewardSet.from_config([{"name": "answer_mach"}])
    assert "did you mean 'answer_match'" in str(e.value)
    assert "known rewards: " + ", ".join(known_rewards()) in str(e.value)


def test_config_load_fails_on_a_misnamed_reward_before_anything_runs():
    raw = {"stages": [{"method": "sft"},
                      {"method": "grpo", "grpo": {"rewards": [{"name": "exact_match", "weight": 1}]}}]}
    with pytest.raises(ConfigError, match=r"x\.yaml: stages\[1\]: grpo\.rewards\[0\]: unknown reward 'exact_match'.*"
                                          r"known rewards: answer_match, choice_match"):
        build_config(raw, "x.yaml")


@pytest.mark.parametrize("entries, message", [
    ([{"name": "instruction_adherence", "max_word": 3}], "has no option 'max_word' (did you mean 'max_words'?)"),
    ([{"name": "answer_match", "wieght": 2}], "has no option 'wieght' (did you mean 'weight'?); its options: none; "
                                             "every term's keys: name, weight, label, fallback"),
    ([{"name": "reward_model"}], "needs option(s) path"),
    ([{"name": "length_penalty"}], "'answer_match' must name a term listed before"),
    ([{"name": "answer_match"}, {"name": "answer_match"}], "already listed"),
    ([{"name": "answer_match", "weight": "x"}], "weight: expected a finite number"),
    ([{"weight": 1}], "expected a mapping with a 'name'"),
    ([], "empty"),
    ([{"name": "answer_match", "weight": 0}, {"name": "valid_choice", "weight": 0.0}],
     "every term has weight 0, so the reward is 0 for every completion"),  # it trained on the KL term alone
    ([{"name": "hybrid", "rule": "exact"}], "unknown reward 'exact'"),
    ([{"name": "hybrid", "open": "reward_model"}], "open (reward_model): reward 'reward_model' needs option(s) path"),
    ([{"name": "no_such_module_xyz:fn"}], "cannot be loaded: ModuleNotFoundError"),
])
def test_start_up_errors(entries, message):
    with pytest.raises(RewardConfigError) as e:
        RewardSet.from_config(entries)
    assert message in str(e.value)


def test_a_user_function_named_by_file_or_module(tmp_path, monkeypatch):
    code = textwrap.dedent("""
        def shout(sample, bonus=1.0):
            return bonus if sample.completion.isupper() else 0.0
    """)
    (tmp_path / "my_rewards.py").write_text(code)
    rs = RewardSet.from_config([{"name": f"{tmp_path}/my_rewards.py:shout", "label": "shout", "bonus": 2}])
    assert rs(samples("YES", "yes"), 2).terms["shout"] == [2.0, 0.0]
    monkeypatch.syspath_prepend(str(tmp_path))
    rs = RewardSet.from_config([{"name": "my_rewards:shout"}])
    assert rs(samples("YES", "yes"), 2).total.tolist() == [1.0, 0.0]
    with pytest.raises(RewardConfigError, match="has no option 'bonu'"):
        RewardSet.from_config([{"name": "my_rewards:shout", "bonu": 2}])
    sys.modules.pop("my_rewards", None)


@pytest.mark.parametrize("code, cause", [("def brevity(sample:\n", "SyntaxError: '(' was never closed"),
                                         ("raise RuntimeError('no GPU here')\n", "RuntimeError: no GPU here")])
def test_a_reward_file_that_fails_to_run_names_its_cause_every_time(tmp_path, capsys, code, cause):
    """The config is checked more than once (the YAML, then with the command line's items); the
    second load found the half-run module and blamed a missing function instead of the cause."""
    from mmalign.cli import main

    (tmp_path / "mine.py").write_text(code)
    (tmp_path / "x.yaml").write_text("stages:\n  - {name: sft, method: sft, data: {train_file: a.jsonl}}\n"
                                     "  - {name: grpo, method: grpo, data: {train_file: a.jsonl}}\n")
    rewards = f"stages.grpo.grpo.rewards=[{{name: {tmp_path}/mine.py:brevity}}]"
    assert main(["train", str(tmp_path / "x.yaml"), rewards, "--plan"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"reward '{tmp_path}/mine.py:brevity' cannot be loaded: {cause}" in line


def test_a_function_that_cannot_take_the_sample_is_refused_at_start_up():
    with pytest.raises(RewardConfigError, match="'os:getcwd' takes no positional argument for the sample"):
        RewardSet.from_config([{"name": "os:getcwd"}])


def test_hybrid_routes_verifiable_samples_to_the_rule_and_the_rest_to_the_open_term():
    entries = [{"name": "hybrid", "rule": "answer_match", "open": "reference_f1",
                "rule_by_kind": {"grounding": "temporal_iou"}}]
    group = [Sample("q", "yes", answer="yes"),                                   # rule: 1
             Sample("q", "a red circle", truth={"reference": "a red square"}),   # open: F1 2/3
             Sample("q", "2 to 6", truth={"kind": "grounding", "span": [4, 6]}),  # by kind: IoU 0.5
             Sample("q", "nope", answer="yes")]                                  # rule: 0
    out = RewardSet.from_config(entries)(group, group_size=4)
    assert out.terms["hybrid"] == pytest.approx([1.0, 2 / 3, 0.5, 0.0])
    no_open = RewardSet.from_config([{"name": "hybrid"}])(group[:2], group_size=2)
    assert no_open.terms["hybrid"] == [1.0, 0.0] and "no `open` term" in no_open.errors[0]["error"]
