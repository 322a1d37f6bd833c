"""The evaluation after training: scoring, the configuration, and real runs on the tiny model (base model
against fine-tuned model on validation rows, the report in both folders, the base answers kept for a
resumed job, the skipped cases)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.trainer.conftest import Pair, TrainerRun, job_environment, run_job, sagemaker_hyperparameters
from trainer.errors import TrainerInputError
from trainer.evaluation import (
    BASE_CACHE_FILE,
    REPORT_FILE,
    SKIPPED_DISABLED,
    SKIPPED_NO_VALIDATION,
    SKIPPED_STOPPED,
    batches,
    exact_match,
    format_match,
    generate_answers,
    headline,
    score_answers,
    shape,
    skip_reason,
    stop_token_ids,
    token_f1,
)
from trainer.hyperparameters import EvaluationConfig, parse_hyperparameters

pytestmark = pytest.mark.xdist_group("trainer")

# What the tiny model learns in seconds (full fine-tuning): the triage labels of the sample data.
LEARNS = {"epochs": 8, "learning_rate": 0.01, "batch_size": 8, "sft_config": {"logging_steps": 50}}
QUICK = {"epochs": 1, "batch_size": 8, "sft_config": {"max_steps": 1}}


# Scoring ---------------------------------------------------------------------------------------------


def test_exact_match_compares_the_trimmed_text():
    assert exact_match("  category=billing; priority=medium\n", "category=billing; priority=medium") == 1.0
    assert exact_match("category=billing; priority=high", "category=billing; priority=medium") == 0.0
    assert exact_match("Category=billing", "category=billing") == 0.0  # case counts


@pytest.mark.parametrize(
    ("answer", "expected", "f1"),
    [
        ("category=billing; priority=medium", "category=billing; priority=medium", 1.0),
        # 4 tokens each, 3 shared: precision = recall = 3/4.
        ("category=billing; priority=high", "category=billing; priority=medium", 0.75),
        # 2 answer tokens, 4 expected, 2 shared: precision 1, recall 1/2, F1 2/3.
        ("Billing, PRIORITY", "category=billing; priority=medium", 2 / 3),
        # Multisets: "a a b" vs "a b b" share one a and one b: precision = recall = 2/3.
        ("a a b", "a b b", 2 / 3),
        ("nothing shared", "category=billing", 0.0),
        ("", "", 1.0),
        ("...", "!", 1.0),  # no word tokens on either side
        ("", "category=billing", 0.0),
        ("category=billing", " ", 0.0),
    ],
)
def test_token_f1_on_hand_computed_cases(answer, expected, f1):
    assert token_f1(answer, expected) == pytest.approx(f1)


def test_format_match_compares_shapes():
    # The triage completions: same shape whatever the words.
    assert format_match("category=account; priority=high", "category=billing; priority=medium") == 1.0
    assert shape("category=account; priority=high") == shape("category=billing;   priority=medium")
    assert format_match("The ticket is about billing.", "category=billing; priority=medium") == 0.0
    assert format_match("category=billing", "category=billing; priority=medium") == 0.0
    # Free text: the same run of words and punctuation.
    assert format_match("Reset it in settings.", "Update the address.") == 0.0
    assert format_match("Update  your\naddress.", "Change the address.") == 1.0
    # JSON: keys and value types, recursively; the number of list elements does not count.
    expected = '{"category": "billing", "priority": 2, "tags": ["a", "b"], "meta": {"vip": true}}'
    assert (
        format_match('{"meta": {"vip": false}, "tags": ["x"], "priority": 5, "category": "login"}', expected)
        == 1.0
    )
    assert (
        format_match('{"category": "billing", "priority": 2, "tags": [], "meta": {"vip": true}}', expected)
        == 0.0
    )
    assert (
        format_match('{"category": "billing", "urgency": 2, "tags": ["a"], "meta": {"vip": true}}', expected)
        == 0.0
    )
    assert (
        format_match(
            '{"category": "billing", "priority": "2", "tags": ["a"], "meta": {"vip": true}}', expected
        )
        == 0.0
    )
    assert format_match('{"category": "billing", "priority": 2, "tags": ["a"], "meta": {}}', expected) == 0.0
    assert format_match("category=billing", expected) == 0.0  # not JSON at all
    assert format_match("[1, 2, 3]", "[4]") == 1.0
    assert format_match('["1"]', "[4]") == 0.0


def test_a_row_the_model_gets_wrong_lowers_every_score():
    expected = ["category=billing; priority=medium", "category=login; priority=high"]

    right = score_answers(expected, expected)
    one_wrong = score_answers([expected[0], "I think this is about logging in."], expected)

    assert right == {"exact_match": 1.0, "token_f1": 1.0, "format_match": 1.0}
    assert one_wrong["exact_match"] == 0.5
    assert one_wrong["format_match"] == 0.5
    # The wrong answer shares no word token with its row ("logging" is not "login"): its F1 is 0.
    assert one_wrong["token_f1"] == 0.5
    assert all(one_wrong[name] < right[name] for name in right)


def test_scores_are_means_rounded_to_four_decimals():
    scores = score_answers(["a", "b", "c"], ["a", "x", "y"])

    assert scores["exact_match"] == 0.3333


def test_the_headline_reads_as_percentages():
    report = {
        "rows": 40,
        "base": {"exact_match": 0.125, "token_f1": 0.31, "format_match": 0.0},
        "fine_tuned": {"exact_match": 0.8, "token_f1": 0.93, "format_match": 1.0},
    }

    assert headline(report) == (
        "evaluation: exact match 12.5% -> 80.0% on 40 validation rows "
        "(token F1 0.31 -> 0.93, format 0.0% -> 100.0%)"
    )


# Configuration and skipping ----------------------------------------------------------------------------


def test_evaluation_config_defaults_and_values():
    assert parse_hyperparameters({}).evaluation_config == EvaluationConfig(
        enabled=True, max_rows=100, max_new_tokens=None, samples=20
    )
    hp = parse_hyperparameters(
        {"evaluation_config": '{"enabled": "false", "max_rows": "40", "max_new_tokens": 64, "samples": 0}'}
    )
    assert hp.evaluation_config == EvaluationConfig(enabled=False, max_rows=40, max_new_tokens=64, samples=0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"max_row": 5}', "evaluation_config has no key 'max_row'; known: enabled, max_new_tokens"),
        ('{"max_rows": 0}', "'evaluation_config.max_rows' must be from 1 to 1000, not 0"),
        ('{"max_rows": 1001}', "'evaluation_config.max_rows' must be from 1 to 1000, not 1001"),
        ('{"max_new_tokens": 2000}', "'evaluation_config.max_new_tokens' must be from 1 to 1024"),
        ('{"samples": -1}', "'evaluation_config.samples' must be from 0 to 100"),
        ('{"samples": 2.5}', "'evaluation_config.samples' must be a whole number"),
        ('{"enabled": "sometimes"}', "'evaluation_config.enabled' must be true or false"),
        ("[1]", "'evaluation_config' must be a JSON object"),
    ],
)
def test_bad_evaluation_config_values_are_refused(value, message):
    with pytest.raises(TrainerInputError, match=message.replace("(", r"\(")):
        parse_hyperparameters({"evaluation_config": value})


def test_a_bad_evaluation_config_fails_the_job_with_its_reason(tmp_path):
    from trainer.train import main

    train = tmp_path / "training"
    train.mkdir()
    (train / "rows.jsonl").write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    (tmp_path / "hyperparameters.json").write_text(
        json.dumps(
            sagemaker_hyperparameters({"base_model": "/nonexistent", "evaluation_config": {"max_rows": 0}})
        )
    )

    code = main([], job_environment(tmp_path, train))

    assert code == 1
    assert (tmp_path / "output" / "failure").read_text() == (
        "hyperparameter 'evaluation_config.max_rows' must be from 1 to 1000, not 0"
    )


def test_why_a_job_does_not_evaluate():
    on = EvaluationConfig()

    assert skip_reason(on, has_validation=True, world_size=1) is None
    assert skip_reason(EvaluationConfig(enabled=False), has_validation=True, world_size=1) == SKIPPED_DISABLED
    assert skip_reason(on, has_validation=False, world_size=1) == SKIPPED_NO_VALIDATION
    # The platform turns the evaluation off without validation data: the missing data is the reason.
    off = EvaluationConfig(enabled=False)
    assert skip_reason(off, has_validation=False, world_size=1) == SKIPPED_NO_VALIDATION
    assert skip_reason(on, has_validation=True, world_size=8) == (
        "evaluation runs in single-process jobs; this job ran on 8 processes"
    )


# Generation ------------------------------------------------------------------------------------------


def test_answers_stop_at_the_templates_end_of_turn_token(tiny_model_dir):
    from transformers import AutoTokenizer

    from trainer.data import Row

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    row = Row(prompt="p", completion="category=billing", source="x", line=1)
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    assert stop_token_ids(tokenizer, None, row) == [end]

    # A template whose turns end with a token other than the end-of-sequence token: both stop.
    tokenizer.chat_template = (
        "{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + '<|system|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
    )
    assert stop_token_ids(tokenizer, None, row) == sorted(
        [end, tokenizer.convert_tokens_to_ids("<|system|>")]
    )

    tokenizer.chat_template = None
    assert stop_token_ids(tokenizer, None, row) == [tokenizer.eos_token_id]


def test_batches_group_rows_of_similar_length_within_the_limits():
    lengths = [30, 10, 20, 10, 500, 40]

    assert batches(lengths, 10, batch_rows=2, batch_tokens=2000) == [[1, 3], [2, 0], [5, 4]]
    # Three rows of width 50 (40 + 10) would be 150 tokens; a row over the budget goes alone.
    assert batches(lengths, 10, batch_rows=16, batch_tokens=120) == [[1, 3, 2], [0, 5], [4]]
    assert batches([], 10, batch_rows=16, batch_tokens=120) == []


# Real runs on the tiny model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluated(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_model_dir: Path,
    triage_pairs: list[Pair],
    triage_validation_pairs: list[Pair],
) -> tuple[TrainerRun, str]:
    """One run that learns the triage labels, evaluated on 32 of the 40 validation rows (all in samples)."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        run = run_job(
            tmp_path_factory.mktemp("evaluated") / "job",
            tiny_model_dir,
            {**LEARNS, "evaluation_config": {"max_rows": 32, "samples": 32}},
            triage_pairs[:200],
            triage_validation_pairs,
        )
    assert run.exit_code == 0, run.failure
    return run, output.getvalue()


def _report(folder: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((folder / REPORT_FILE).read_text())
    return report


@pytest.mark.slow
def test_the_fine_tuned_model_beats_the_base_on_the_same_rows(evaluated):
    run, log = evaluated

    report = _report(run.model_dir)
    assert report == _report(run.checkpoint_dir)
    assert set(report) == {
        "format_version",
        "rows",
        "validation_rows",
        "max_new_tokens",
        "decoding",
        "base",
        "fine_tuned",
        "seconds",
        "samples",
        "notes",
    }
    assert (report["format_version"], report["rows"], report["validation_rows"]) == (1, 32, 40)
    assert report["decoding"] == "greedy"
    # The longest triage completion is 7 tokens of the tiny tokenizer: 7 + 16.
    assert report["max_new_tokens"] == 23
    assert report["base"]["exact_match"] == 0.0  # a random model
    assert report["base"]["token_f1"] < 0.1
    assert report["fine_tuned"]["exact_match"] >= 0.8
    assert report["fine_tuned"]["format_match"] >= 0.9
    for name in ("exact_match", "token_f1", "format_match"):
        assert report["fine_tuned"][name] > report["base"][name]
    assert report["seconds"]["base"] > 0
    assert report["seconds"]["fine_tuned"] > 0

    # The summary holds the report without samples, and the configuration used.
    summary = run.summary
    assert summary["evaluation"] == {key: value for key, value in report.items() if key != "samples"}
    assert summary["optional_hyperparameters"]["evaluation_config"] == {
        "enabled": True,
        "max_rows": 32,
        "max_new_tokens": 23,
        "samples": 32,
    }
    assert (run.checkpoint_dir / BASE_CACHE_FILE).is_file()
    assert "evaluation: base model 32/32 rows" in log
    assert "evaluation: fine-tuned model 16/32 rows" in log
    assert log.rstrip().splitlines()[-1] == headline(report)


@pytest.mark.slow
def test_the_scores_are_those_of_the_real_answers(evaluated, triage_validation_pairs):
    run, _ = evaluated
    report = _report(run.model_dir)
    samples = report["samples"]

    assert len(samples) == report["rows"] == 32
    assert [(s["prompt"], s["expected"]) for s in samples] == [tuple(p) for p in triage_validation_pairs[:32]]
    expected = [s["expected"] for s in samples]
    assert score_answers([s["base"] for s in samples], expected) == report["base"]
    assert score_answers([s["fine_tuned"] for s in samples], expected) == report["fine_tuned"]
    # The base answers of the report are those cached for a resumed job.
    cached = json.loads((run.checkpoint_dir / BASE_CACHE_FILE).read_text())
    assert cached["answers"] == [s["base"] for s in samples]


@pytest.mark.slow
def test_batched_greedy_answers_equal_one_row_at_a_time(evaluated, tiny_model_dir, triage_validation_pairs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.data import Row, prompt_token_ids

    run, _ = evaluated
    tokenizer = AutoTokenizer.from_pretrained(run.model_dir)
    rows = [Row(p, c, "v", i) for i, (p, c) in enumerate(triage_validation_pairs[:24])]
    prompts = prompt_token_ids(rows, tokenizer)
    stops = stop_token_ids(tokenizer, None, rows[0])
    settings: dict[str, Any] = {"max_new_tokens": 23, "stop_ids": stops, "pad_id": tokenizer.pad_token_id}
    answers = {}
    for name, folder in (("fine_tuned", run.model_dir), ("base", tiny_model_dir)):
        model = AutoModelForCausalLM.from_pretrained(folder)

        batched = generate_answers(model, tokenizer, prompts, **settings)  # 16 rows, then 8
        one_by_one = generate_answers(model, tokenizer, prompts, batch_rows=1, **settings)

        assert batched.texts == one_by_one.texts, name
        assert batched.reached_limit == one_by_one.reached_limit, name
        answers[name] = batched
    # The fine-tuned answers stop after the label; the random model's run on to max_new_tokens.
    assert not any(answers["fine_tuned"].reached_limit)
    assert all(answers["base"].reached_limit)
    # And they are the answers of the report: the saved model is the model that was evaluated.
    samples = _report(run.model_dir)["samples"][:24]
    assert answers["fine_tuned"].texts == [sample["fine_tuned"] for sample in samples]
    assert answers["base"].texts == [sample["base"] for sample in samples]


@pytest.mark.slow
def test_a_resumed_job_reuses_the_base_answers(
    tmp_path, tiny_model_dir, triage_pairs, triage_validation_pairs, monkeypatch
):
    from trainer.reporting import StopOnSignal

    root = tmp_path / "job"
    hyperparameters = {"epochs": 2, "batch_size": 8, "evaluation_config": {"max_rows": 16}}
    original = StopOnSignal.on_step_end

    def stop_at_step_4(self: StopOnSignal, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step >= 4:
            self.requested.set()  # as SIGTERM does
        return original(self, args, state, control, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(StopOnSignal, "on_step_end", stop_at_step_4)
        stopped = run_job(
            root, tiny_model_dir, hyperparameters, triage_pairs[:64], triage_validation_pairs[:16]
        )

    assert stopped.exit_code == 0, stopped.failure
    assert stopped.summary["status"] == "stopped"
    skipped = {"format_version": 1, "skipped": SKIPPED_STOPPED}
    assert _report(stopped.model_dir) == _report(stopped.checkpoint_dir) == skipped
    assert stopped.summary["evaluation"] == skipped
    cache = stopped.checkpoint_dir / BASE_CACHE_FILE
    written = cache.stat().st_mtime_ns

    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        resumed = run_job(
            root, tiny_model_dir, hyperparameters, triage_pairs[:64], triage_validation_pairs[:16]
        )

    assert resumed.exit_code == 0, resumed.failure
    assert resumed.summary["metrics"]["resumed_from_step"] == 4
    assert cache.stat().st_mtime_ns == written
    log = output.getvalue()
    assert f"evaluation: base model answers reused from {BASE_CACHE_FILE} (16 rows)" in log
    assert "evaluation: base model 16/16 rows" not in log
    assert "evaluation: fine-tuned model 16/16 rows" in log
    report = _report(resumed.model_dir)
    assert report == _report(resumed.checkpoint_dir)
    assert report["rows"] == 16
    assert any("reused" in note for note in report["notes"])
    cached = json.loads(cache.read_text())
    assert [sample["base"] for sample in report["samples"]] == cached["answers"]
    assert report["seconds"]["base"] == cached["seconds"]


@pytest.mark.parametrize(
    ("hyperparameters", "with_validation", "reason"),
    [
        ({}, False, SKIPPED_NO_VALIDATION),
        ({"evaluation_config": {"enabled": False}}, True, SKIPPED_DISABLED),
    ],
    ids=["no-validation-data", "turned-off"],
)
def test_skipped_evaluations_say_why(
    run_trainer, triage_pairs, triage_validation_pairs, hyperparameters, with_validation, reason, capsys
):
    run = run_trainer(
        {**QUICK, **hyperparameters},
        triage_pairs[:8],
        triage_validation_pairs[:8] if with_validation else None,
    )

    assert run.exit_code == 0, run.failure
    skipped = {"format_version": 1, "skipped": reason}
    assert _report(run.model_dir) == _report(run.checkpoint_dir) == skipped
    assert run.summary["evaluation"] == skipped
    assert run.summary["optional_hyperparameters"]["evaluation_config"]["max_new_tokens"] is None
    assert not (run.checkpoint_dir / BASE_CACHE_FILE).exists()
    out = capsys.readouterr().out
    assert "evaluation: base model" not in out
    assert out.rstrip().splitlines()[-1] == f"evaluation skipped: {reason}"


def test_a_model_folder_is_known_by_what_it_holds_not_where_it_is(tmp_path):
    from trainer.evaluation import folder_digest

    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text('{"hidden_size": 64}')
        (tmp_path / name / "model.safetensors").write_bytes(b"w" * 10)
    assert folder_digest(tmp_path / "first") == folder_digest(tmp_path / "second")

    (tmp_path / "second" / "config.json").write_text('{"hidden_size": 128}')
    assert folder_digest(tmp_path / "first") != folder_digest(tmp_path / "second")
