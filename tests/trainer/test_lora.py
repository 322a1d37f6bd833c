"""LoRA: the product's defaults, the artifacts with and without merging, and that they load."""

from __future__ import annotations

import json

import pytest

from tests.trainer.conftest import logits

pytestmark = [pytest.mark.xdist_group("trainer"), pytest.mark.slow]

SHORT = {
    "epochs": 1,
    "learning_rate": 0.01,
    "batch_size": 8,
    "sft_config": {"max_steps": 6, "logging_steps": 3},
}


def test_use_lora_alone_gets_the_default_lora_config_and_loads_through_peft(
    run_trainer, triage_pairs, tiny_model_dir
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = run_trainer({**SHORT, "use_lora": True}, triage_pairs[:48])

    assert run.exit_code == 0, run.failure
    recorded = run.summary["optional_hyperparameters"]
    assert recorded["use_lora"] is True
    assert recorded["merge_adapters"] is False
    assert recorded["lora_config"]["r"] == 8
    assert recorded["lora_config"]["lora_alpha"] == 8
    assert recorded["lora_config"]["lora_dropout"] == 0.0
    adapter_config = json.loads((run.model_dir / "adapter" / "adapter_config.json").read_text())
    assert (adapter_config["r"], adapter_config["lora_alpha"], adapter_config["lora_dropout"]) == (8, 8, 0.0)
    # The tiny model asks for embeddings and head to train too, or a random model learns nothing.
    assert sorted(adapter_config["modules_to_save"]) == ["embed_tokens", "lm_head"]
    # Not merged: no base weights copied, the adapter at the top names its base.
    assert not (run.model_dir / "model.safetensors").exists()
    assert (run.model_dir / "adapter_model.safetensors").is_file()

    tokenizer = AutoTokenizer.from_pretrained(run.model_dir)
    texts = [prompt + completion for prompt, completion in triage_pairs[:4]]
    loaded = AutoModelForCausalLM.from_pretrained(run.model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    base_logits = logits(base, tokenizer, texts)
    with_adapter = PeftModel.from_pretrained(base, run.model_dir / "adapter")
    expected = logits(with_adapter, tokenizer, texts)
    assert (logits(loaded, tokenizer, texts) - expected).abs().max().item() <= 1e-5
    assert (expected - base_logits).abs().max().item() > 1e-3  # the adapter changed the model


def test_merged_model_gives_the_logits_of_base_plus_adapter(run_trainer, triage_pairs, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lora = {
        "r": 4,
        "alpha": 16,
        "dropout": 0.05,
        "target_modules": ["q_proj", "v_proj", "o_proj"],
        "bias": "none",
    }

    run = run_trainer(
        {**SHORT, "use_lora": "true", "merge_adapters": "true", "lora_config": lora}, triage_pairs[:48]
    )

    assert run.exit_code == 0, run.failure
    recorded = run.summary["optional_hyperparameters"]["lora_config"]
    assert (recorded["r"], recorded["lora_alpha"], recorded["lora_dropout"]) == (4, 16, 0.05)
    assert sorted(recorded["target_modules"]) == ["o_proj", "q_proj", "v_proj"]
    assert run.summary["artifacts"]["merged"] is True
    assert (run.model_dir / "model.safetensors").is_file()
    assert (run.model_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert not (run.model_dir / "adapter_config.json").exists()

    tokenizer = AutoTokenizer.from_pretrained(run.model_dir)
    texts = [prompt + completion for prompt, completion in triage_pairs[:6]]
    merged = AutoModelForCausalLM.from_pretrained(run.model_dir)
    base_plus_adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), run.model_dir / "adapter"
    )
    difference = (logits(merged, tokenizer, texts) - logits(base_plus_adapter, tokenizer, texts)).abs().max()
    assert difference.item() <= 1e-4


def test_continues_from_an_earlier_adapter(run_trainer, triage_pairs, tmp_path):
    first = run_trainer({**SHORT, "use_lora": True}, triage_pairs[:48], root=tmp_path / "first")
    assert first.exit_code == 0, first.failure

    second = run_trainer(
        {**SHORT, "use_lora": True, "base_model": str(first.model_dir)},
        triage_pairs[:48],
        root=tmp_path / "second",
    )

    assert second.exit_code == 0, second.failure
    assert second.summary["base_model"]["continued_adapter"] is True
    assert (second.model_dir / "adapter" / "adapter_model.safetensors").is_file()
    # An adapter that was not merged also left a merged copy, named in the summary written last.
    assert first.summary["artifacts"]["merged_variant"] == "merged/"
    assert (first.output_data_dir / "merged" / "model.safetensors").is_file()
    assert not (first.output_data_dir / ".merged-partial").exists()


def test_a_full_fine_tune_continues_from_an_earlier_unmerged_adapter(run_trainer, triage_pairs, tmp_path):
    # The adapter is merged into its base, and every weight of the result trains (peft leaves the base's
    # weights frozen when it merges: the run failed with "element 0 of tensors does not require grad").
    first = run_trainer({**SHORT, "use_lora": True}, triage_pairs[:48], root=tmp_path / "first")
    assert first.exit_code == 0, first.failure

    second = run_trainer(
        {**SHORT, "base_model": str(first.model_dir)}, triage_pairs[:48], root=tmp_path / "second"
    )

    assert second.exit_code == 0, second.failure
    assert any("merged the earlier model's adapter" in note for note in second.summary["notes"])
    assert second.summary["artifacts"]["adapter"] is None
    assert (second.model_dir / "model.safetensors").is_file()
