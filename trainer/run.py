"""One training run: load the base model, tokenize, train with TRL's SFTTrainer, save, record."""

from __future__ import annotations

import datetime as dt
import re
import tempfile
import traceback
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.artifacts import (
    MERGED_DIR,
    SUMMARY_FILE,
    library_versions,
    save_merged_copy,
    save_model,
    write_summary,
)
from trainer.data import EncodedRows, Row, encode_rows
from trainer.environment import Paths, is_main_process
from trainer.errors import TrainerInputError
from trainer.evaluation import (
    SKIPPED_STOPPED,
    SKIPPED_STOPPED_DURING,
    SKIPPED_UNFINISHED,
    Answers,
    EvaluationInterruptedError,
    EvaluationPlan,
    base_answers,
    build_report,
    fine_tuned_answers,
    folder_digest,
    plan_evaluation,
    recorded_config,
    skip_reason,
    skipped_report,
    without_samples,
    write_report,
)
from trainer.hyperparameters import Hyperparameters
from trainer.model_source import BaseModel, read_hf_token, resolve_base_model
from trainer.planning import (
    build_lora_arguments,
    build_sft_arguments,
    default_max_length,
    plan_model_init,
    recorded_lora_config,
    recorded_sft_config,
    sharded,
)
from trainer.reporting import ReportingCallback, StopOnSignal

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint with the highest step that the trainer finished writing."""
    if not folder.is_dir():
        return None
    found = [
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if (match := CHECKPOINT_PATTERN.match(path.name)) and (path / "trainer_state.json").is_file()
    ]
    return max(found)[1] if found else None


def _quiet_libraries() -> None:
    import datasets
    from transformers.utils import logging

    hf_logging: Any = logging  # untyped functions
    datasets.disable_progress_bars()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _say(env: Mapping[str, str], message: str) -> None:
    if is_main_process(env):
        print(message, flush=True)


def _encode(
    rows: Sequence[Row], tokenizer: Any, max_length: int, channel: str, env: Mapping[str, str]
) -> EncodedRows:
    encoded = encode_rows(rows, tokenizer, max_length)
    if encoded.dropped_too_long:
        _say(
            env,
            f"{channel} data: {encoded.dropped_too_long} of {encoded.read} rows are longer than max_length "
            f"{max_length} tokens and were left out (longest {encoded.longest_tokens}): "
            + ", ".join(encoded.dropped_rows),
        )
    if not encoded.examples:
        raise TrainerInputError(
            f"every {channel} row is longer than max_length {max_length} tokens "
            f"(longest {encoded.longest_tokens}); raise max_length or shorten the rows"
        )
    return encoded


def _load_base(base: BaseModel, hp: Hyperparameters, init_kwargs: dict[str, Any], token: str | None) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        base.load_from, token=token, revision=hp.base_model_revision, **init_kwargs
    )


def _load_model(base: BaseModel, hp: Hyperparameters, init_kwargs: dict[str, Any], token: str | None) -> Any:
    model = _load_base(base, hp, init_kwargs, token)
    if base.adapter_dir is None:
        return model
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, str(base.adapter_dir), is_trainable=hp.use_lora)
    if hp.use_lora:
        return model
    # Full fine-tuning of the merged model: peft leaves the base's weights frozen.
    return model.merge_and_unload().requires_grad_(True)


def _enable_fsdp(sft_config: Any, on_gpu: bool) -> None:
    """Start the process group and make accelerate shard the model (``sft_config`` asks for FSDP).

    transformers reads the weights on one process per host when accelerate's launcher variable says
    FSDP (the Trainer's arguments alone do not set it). accelerate turns FSDP on only for accelerator
    process groups; on the CPU (gloo: the tests) the group is marked as a multi-device one before the
    Trainer builds its Accelerator, so the same FSDP2 code runs there. Both changes stay for the rest
    of the process: sharding needs several processes, which torchrun starts for this run alone.
    """
    import os

    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    os.environ["ACCELERATE_USE_FSDP"] = "true"
    _ = sft_config.device  # starts the process group (gloo on the CPU, NCCL on GPUs)
    state = PartialState()
    if not on_gpu and state.distributed_type == DistributedType.MULTI_CPU:
        PartialState._shared_state["distributed_type"] = DistributedType.MULTI_GPU


def peak_memory(on_gpu: bool) -> dict[str, float]:
    """The most memory this process held: GPU memory allocated and reserved by torch, or the CPU's
    resident set (GB = 10^9 bytes, as tunelab's memory advice counts)."""
    if on_gpu:
        import torch

        return {
            "peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 1e9, 3),
            "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 1e9, 3),
        }
    import resource

    # ru_maxrss is in kilobytes on Linux.
    return {"peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 3)}


@dataclass
class _Evaluation:
    """The evaluation's state across training: why it is skipped, or its rows and the base answers."""

    skipped: str | None
    plan: EvaluationPlan | None = None
    base: Answers | None = None
    notes: list[str] = field(default_factory=list)


def _base_note(base: BaseModel, hp: Hyperparameters) -> str | None:
    """What the "base" of the evaluation is, when it is not simply the base model."""
    earlier = "the base answers come from the earlier tunelab model this job continues, as loaded"
    if base.adapter_dir is not None:
        return f"{earlier} ({base.name} with its adapter{'' if hp.use_lora else ' merged'})"
    if (Path(base.load_from) / SUMMARY_FILE).is_file():
        return f"{earlier} ({base.name})"
    if hp.use_lora:
        return "the base answers come from the base model before the adapter was attached"
    return None


def _evaluate_base(
    *,
    hp: Hyperparameters,
    base: BaseModel,
    recorded_model_init: Mapping[str, Any],
    paths: Paths,
    validation_rows: Sequence[Row] | None,
    validation: EncodedRows | None,
    tokenizer: Any,
    model: Any,
    world_size: int,
    on_gpu: bool,
    env: Mapping[str, str],
    stop: StopOnSignal,
) -> _Evaluation:
    """Before training (one process only): the base model answers the evaluated rows, or an earlier
    attempt's answers are taken from the checkpoint folder. A failure here skips the evaluation, it
    does not fail the job."""
    skipped = skip_reason(hp.evaluation_config, has_validation=validation is not None, world_size=world_size)
    if skipped is not None or not validation_rows or validation is None:
        return _Evaluation(skipped=skipped)
    state = _Evaluation(skipped=None)
    note = _base_note(base, hp)
    if note:
        state.notes.append(note)
    try:
        if on_gpu and not getattr(model, "hf_device_map", None) and not getattr(model, "is_quantized", False):
            model.to("cuda")  # the Trainer would move it there next
        state.plan = plan_evaluation(
            hp.evaluation_config,
            validation_rows=validation_rows,
            fitting=validation.kept,
            tokenizer=tokenizer,
            model=model,
            base={
                **base.describe(),
                # A folder by what it holds: a resumed job may unpack the same model somewhere else.
                "name": folder_digest(Path(base.load_from)) if Path(base.load_from).is_dir() else base.name,
                "revision": hp.base_model_revision,
                "adapter": folder_digest(base.adapter_dir) if base.adapter_dir else None,
                "use_lora": hp.use_lora,
                "model_init": dict(recorded_model_init),
            },
        )
        state.base = base_answers(
            state.plan,
            model=model,
            tokenizer=tokenizer,
            cache_folder=paths.checkpoint_dir,
            say=lambda line: _say(env, line),
            should_stop=stop.requested.is_set,
        )
    except EvaluationInterruptedError:
        state.skipped = SKIPPED_STOPPED
    except Exception as error:
        traceback.print_exc()
        state.skipped = f"the base model's answers could not be generated: {type(error).__name__}: {error}"
    return state


def _generation_model(model: Any) -> Any:
    """The fine-tuned model to generate with: an adapter merged into its base in place (by the saving)
    is its base model now; an adapter still in place answers with the adapter active."""
    if not hasattr(model, "get_base_model"):
        return model
    from peft.tuners.tuners_utils import BaseTunerLayer

    if any(isinstance(module, BaseTunerLayer) for module in model.modules()):
        return model
    return model.get_base_model()


def _evaluate_fine_tuned(
    state: _Evaluation, final_model: Any, tokenizer: Any, env: Mapping[str, str], stop: StopOnSignal
) -> dict[str, Any]:
    assert state.plan is not None
    assert state.base is not None
    try:
        answers = fine_tuned_answers(
            state.plan,
            model=_generation_model(final_model),
            tokenizer=tokenizer,
            say=lambda line: _say(env, line),
            should_stop=stop.requested.is_set,
        )
    except EvaluationInterruptedError:
        return skipped_report(SKIPPED_STOPPED_DURING)
    except Exception as error:
        traceback.print_exc()
        return skipped_report(
            f"the fine-tuned model's answers could not be generated: {type(error).__name__}: {error}"
        )
    return build_report(state.plan, state.base, answers, state.notes)


# How long the other processes wait for the main one to write the model (a large merged copy on the
# CPU can take hours); torchrun ends them at once if the main process fails meanwhile.
FINISH_TIMEOUT = dt.timedelta(hours=12)


class Finish:
    """The processes of a job leave together: the others wait (on a gloo group of their own, so a
    long write outlasts no GPU collective's timeout) until the main process has written the model,
    then every process destroys the process group at the same moment. A process that tears its group
    down, or exits, while a peer still holds a connection to it can abort (SIGABRT, "terminate
    called without an active exception"), failing a job that trained and saved."""

    def __init__(self, world_size: int) -> None:
        self._group: Any = None
        if world_size > 1:
            import torch.distributed as dist

            # Created by every process at the same point (a collective call).
            self._group = dist.new_group(backend="gloo", timeout=FINISH_TIMEOUT)

    def together(self) -> None:
        """Wait until every process of the job is here (nothing to wait for in a single process)."""
        if self._group is not None:
            import torch.distributed as dist

            dist.barrier(group=self._group)


def end_process_group() -> None:
    """Destroy the process group (several processes), each process once it has done its part (after
    `Finish.together`, so all at once). Left to the interpreter's exit, gloo's worker threads can
    still hold tensors that are freed while Python is torn down, which aborts the process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_training(
    *,
    hp: Hyperparameters,
    paths: Paths,
    train_rows: Sequence[Row],
    validation_rows: Sequence[Row] | None,
    env: Mapping[str, str],
    stop: StopOnSignal,
    secrets: list[str],
) -> dict[str, Any]:
    """Train, save the model and the summary; returns the summary."""
    import torch
    from datasets import Dataset
    from transformers import AutoConfig, AutoTokenizer, EarlyStoppingCallback, PrinterCallback, set_seed
    from transformers.utils.import_utils import is_flash_attn_2_available
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    _quiet_libraries()
    # peft and TRL still call a deprecated transformers name; the warning says nothing to a user.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    started = dt.datetime.now(dt.UTC)
    on_gpu = torch.cuda.is_available()
    base = resolve_base_model(hp.base_model, paths.base_model_dir, Path(tempfile.mkdtemp(prefix="tunelab-")))
    token = read_hf_token(hp.hf_token_secret_arn) if hp.hf_token_secret_arn else None
    if token:
        secrets.append(token)
    plan = plan_model_init(hp, on_gpu, is_flash_attn_2_available())
    world_size = int(env.get("WORLD_SIZE", "1"))
    shard = sharded(hp, world_size)
    if hp.distribution == "fsdp" and not shard:
        plan.notes.append("distribution fsdp with one process: nothing to shard, trained as one process")
    for note in plan.notes:
        _say(env, f"note: {note}")

    set_seed(hp.seed)
    tokenizer = AutoTokenizer.from_pretrained(
        base.tokenizer_from, token=token, revision=hp.base_model_revision
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model_config = AutoConfig.from_pretrained(base.load_from, token=token, revision=hp.base_model_revision)
    max_length = hp.max_length or default_max_length(model_config, tokenizer)
    train = _encode(train_rows, tokenizer, max_length, "training", env)
    validation = (
        _encode(validation_rows, tokenizer, max_length, "validation", env) if validation_rows else None
    )

    # The configuration first: it starts the process group, and with FSDP the weights are then read
    # on one process per host only (the others build the model on the meta device and receive them).
    sft_arguments = build_sft_arguments(
        hp,
        plan,
        output_dir=str(paths.checkpoint_dir),
        has_validation=validation is not None,
        max_length=max_length,
        on_gpu=on_gpu,
        world_size=world_size,
    )
    sft_config = SFTConfig(**sft_arguments)
    if shard:
        _enable_fsdp(sft_config, on_gpu)
    model = _load_model(base, hp, plan.model_init_kwargs, token)
    continued_adapter = base.adapter_dir is not None and hp.use_lora
    if base.adapter_dir is not None:
        plan.notes.append(
            "continued training the earlier model's adapter (its LoRA configuration is kept)"
            if continued_adapter
            else "merged the earlier model's adapter into its base before full fine-tuning"
        )
    # The base model's answers, before an adapter is attached and before training changes the weights.
    evaluation = _evaluate_base(
        hp=hp,
        base=base,
        recorded_model_init=plan.recorded_model_init,
        paths=paths,
        validation_rows=validation_rows,
        validation=validation,
        tokenizer=tokenizer,
        model=model,
        world_size=world_size,
        on_gpu=on_gpu,
        env=env,
        stop=stop,
    )
    peft_config = None
    if hp.use_lora and not continued_adapter:
        from peft import LoraConfig

        peft_config = LoraConfig(**build_lora_arguments(hp, model.config))

    reporter = ReportingCallback(paths.output_data_dir / "metrics.json", enabled=is_main_process(env))
    callbacks: list[Any] = [reporter, stop]
    if hp.early_stopping_patience is not None:
        callbacks.append(
            EarlyStoppingCallback(
                early_stopping_patience=hp.early_stopping_patience,
                early_stopping_threshold=hp.early_stopping_threshold,
            )
        )
    trainer = SFTTrainer(
        model=model,
        args=sft_config,
        train_dataset=Dataset.from_list(train.examples),
        eval_dataset=Dataset.from_list(validation.examples) if validation else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # its raw dict lines would duplicate the metric lines
    resume_from = latest_checkpoint(paths.checkpoint_dir)
    if resume_from is not None:
        _say(env, f"resuming from checkpoint {resume_from.name}")
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

    final_model = trainer.accelerator.unwrap_model(trainer.model)
    is_adapter = hp.use_lora
    lora_recorded = None
    if is_adapter:
        lora_recorded = recorded_lora_config(final_model.peft_config["default"], hp.lora_config or {})
    status = "stopped" if stop.stopped_at_step is not None else "completed"
    if evaluation.skipped is None and status == "stopped":
        evaluation.skipped = SKIPPED_STOPPED
    summary: dict[str, Any] = {
        "format_version": 1,
        "status": status,
        "started_at": started.isoformat(),
        "ended_at": dt.datetime.now(dt.UTC).isoformat(),
        "base_model": base.describe(),
        "hyperparameters": {
            "epochs": int(hp.epochs) if float(hp.epochs).is_integer() else hp.epochs,
            "learning_rate": hp.learning_rate,
            "batch_size": hp.batch_size,
            "warmup_steps": hp.warmup_steps,
            "early_stopping_patience": hp.early_stopping_patience,
            "early_stopping_threshold": hp.early_stopping_threshold if hp.early_stopping_patience else None,
            "max_length": max_length,
            "seed": hp.seed,
        },
        "optional_hyperparameters": {
            "use_lora": hp.use_lora,
            "lora_config": lora_recorded,
            "merge_adapters": hp.merge_adapters,
            "sft_config": recorded_sft_config(sft_config, set(hp.sft_config), plan),
            "model_init_config": plan.recorded_model_init,
            "evaluation_config": evaluation.plan.recorded_config(hp.evaluation_config)
            if evaluation.plan
            else recorded_config(hp.evaluation_config),
        },
        "notes": plan.notes,
        "rows": {"training": train.summary(), "validation": validation.summary() if validation else None},
        "metrics": {**reporter.metrics(), "resumed_from_step": reporter.first_step or 0},
        "device": {
            "type": "gpu" if on_gpu else "cpu",
            "name": torch.cuda.get_device_name(0) if on_gpu else "cpu",
            "processes": world_size,
            "distribution": "fsdp" if trainer.is_fsdp_enabled else "ddp" if world_size > 1 else "single",
            **peak_memory(on_gpu),
        },
        "versions": library_versions(),
        # Replaced by the report once the evaluation has run (after the model is saved).
        "evaluation": skipped_report(evaluation.skipped or SKIPPED_UNFINISHED),
    }
    # A sharded model is gathered by every process together; rank 0 writes it while the others wait for
    # it to finish (`Finish`), so that every process leaves the job at once.
    state_dict = trainer.accelerator.get_state_dict(trainer.model) if trainer.is_fsdp_enabled else None
    finish = Finish(world_size)
    if not trainer.accelerator.is_main_process:
        finish.together()
        return summary
    try:
        load_base = (
            (lambda: _load_base(base, hp, plan.model_init_kwargs, token)) if trainer.is_fsdp_enabled else None
        )
        summary["artifacts"] = save_model(
            final_model,
            tokenizer,
            paths.model_dir,
            is_adapter=is_adapter,
            merge=hp.merge_adapters,
            base_name=base.name,
            state_dict=state_dict,
            load_base=load_base,
        )
        report_folders = [paths.model_dir, paths.checkpoint_dir]
        # Skipped: the reason; else "unfinished" until the answers are scored, so a job that dies during
        # the evaluation never leaves an earlier attempt's report behind in the checkpoint folder.
        write_report(summary["evaluation"], report_folders)
        # The summary first: a stop's grace period may end while the merged copy below is written.
        write_summary(paths.model_dir, summary)
        reporter.write()
        if is_adapter and not hp.merge_adapters:
            summary["artifacts"]["merged_variant"] = save_merged_copy(
                final_model,
                tokenizer,
                paths.model_dir,
                paths.output_data_dir / MERGED_DIR,
                load_base=load_base,
            )
            write_summary(paths.model_dir, summary)
        if evaluation.skipped is None:
            # Last: the model is saved whole before any time goes to answering the validation rows.
            report = _evaluate_fine_tuned(evaluation, final_model, tokenizer, env, stop)
            write_report(report, report_folders)
            summary["evaluation"] = without_samples(report)
            write_summary(paths.model_dir, summary)
        return summary
    finally:
        finish.together()  # also after a failure: the others leave, torchrun reports this one
