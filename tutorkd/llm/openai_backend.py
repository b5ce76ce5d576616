"""A ``Backend`` on an OpenAI-compatible server: ``vllm serve`` (student versions as LoRA adapters) or a
hosted API (teachers).

Requests. ``endpoint="completions"`` (``vllm serve``, base models) sends each prompt as is to
``/v1/completions``; ``endpoint="chat"`` (hosted chat models) sends it as one user message. One
request per prompt, ``concurrency`` at a time, so every prompt gets its own seed (``params.seed + i``,
as in ``VLLMBackend``) and its own retries. Retries with exponential backoff and jitter on connection
errors, timeouts, 408/409/429 and 5xx come from the ``openai`` client itself (``max_retries``).

Failures. A request that still fails after its retries raises (``on_failure="raise"``, the student's:
a failed request must never be scored as a wrong answer; the run stops and is resumed), or
(``on_failure="count"``, a teacher's) comes back as an empty ``Completion`` whose ``failure`` names the
kind (``http_<status>``, ``timeout``, ``connection``, ``empty``, ``malformed_body``), counted in
``faults`` and logged, so the teacher falls back as for malformed output. A truncated or non-JSON 200 body
makes the ``openai`` client raise ``json.JSONDecodeError`` (it is not retried); a body of another shape
comes back unvalidated and is checked here. 401/403/404 (a wrong key, model name or URL) raise under
either setting: they fail every request, and a run that only fell back would hide the mistake.

Structured outputs use vLLM's current API: ``extra_body={"structured_outputs": {"json": schema}}``
(or ``{"regex": ...}``) on completions, ``response_format={"type": "json_schema", ...}`` on chat. The
legacy ``guided_json``/``guided_regex`` fields are never sent: current servers silently ignore them
and return unconstrained text. Callers still validate every output (``StructuredLLM.ask`` does, with
pydantic).

LoRA. A ``StudentVersion`` with an adapter is served under its name: the first request for it loads
the adapter with ``POST /v1/load_lora_adapter`` (the server needs
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` and must see the adapter folder). A name that comes back
with another folder, or rewritten weights, is unloaded and loaded again: never stale weights.

Tokens. Each ``Completion`` carries the request's ``usage``; ``usage`` sums them over the backend's
life. The API key is read from the environment variable ``api_key_env`` and never logged; a loopback
server without one gets the placeholder vLLM accepts.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlparse

from tutorkd.config import ConfigError
from tutorkd.protocols import Completion, SamplingConfig
from tutorkd.schema import StudentVersion, TeacherUsage

if TYPE_CHECKING:
    from openai.types import Completion as TextBody
    from openai.types.chat import ChatCompletion

    from tutorkd.config import BackendConfig, TeacherLLMConfig
    from tutorkd.llm.vllm_server import VLLMServer

log = logging.getLogger(__name__)

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_FATAL_STATUS = frozenset({401, 403, 404})
"""Statuses raised even with ``on_failure="count"`` (see the module docstring)."""


class OpenAIBackend:
    """Implements ``tutorkd.protocols.Backend`` over the OpenAI API (see the module docstring).

    ``model`` is the served name of the base model; ``None`` asks the server (the first model it lists
    that is not an adapter), which suits ``vllm serve``. ``server``, when given, is stopped by
    ``close`` and answers ``sleep``/``wake_up``. Logprobs follow ``VLLMBackend``: the sampled tokens'
    logprobs, the EOS token included when the server reports it. ``on_failure`` says what a request that
    failed after its retries does: raise, or come back as a counted ``Completion.failure`` (see the module
    docstring).
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        endpoint: Literal["completions", "chat"] = "completions",
        max_retries: int = 5,
        timeout_s: float = 600.0,
        concurrency: int = 16,
        server: VLLMServer | None = None,
        on_failure: Literal["raise", "count"] = "raise",
    ) -> None:
        if on_failure not in ("raise", "count"):
            raise ValueError(f"on_failure must be 'raise' or 'count', not {on_failure!r}")
        try:
            import openai
        except ModuleNotFoundError:
            raise ConfigError("backend openai needs the openai package: pip install tutorkd[real]") from None

        key = os.environ.get(api_key_env)
        if key is None:
            if urlparse(base_url).hostname not in _LOOPBACK:
                raise ValueError(f"no API key for {base_url}: set the environment variable {api_key_env}")
            key = "EMPTY"
        self.client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=max_retries,
                                    timeout=timeout_s)
        self.endpoint = endpoint
        self.concurrency = concurrency
        self.server = server
        self.on_failure = on_failure
        self._faults: Counter[str] = Counter()
        self.model = model if model is not None else self._base_model()
        self.usage = TeacherUsage()
        """Prompt and generated tokens, and requests, since the backend was made."""
        self._lock = threading.Lock()
        self._adapters: dict[str, tuple[str, int]] = {}
        """Adapter name to (folder, weights mtime) as loaded into the server."""

    def generate(
        self, prompts: Sequence[str], params: SamplingConfig, version: StudentVersion | None = None
    ) -> list[Completion]:
        """Complete each prompt with ``version``'s adapter (``None`` or no adapter: the base)."""
        if not prompts:
            return []
        model = self._model_for(version)
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            return list(pool.map(lambda ip: self._one(model, ip[1], params, params.seed + ip[0]),
                                 enumerate(prompts)))

    @property
    def faults(self) -> dict[str, int]:
        """Requests that failed after their retries, by ``Completion.failure`` kind, since the backend was
        made (only counted with ``on_failure="count"``; otherwise they raise)."""
        with self._lock:
            return dict(self._faults)

    def close(self) -> None:
        """Close the HTTP client, and stop the server if this backend owns one."""
        self.client.close()
        if self.server is not None:
            self.server.close()

    def sleep(self) -> None:
        """Put the owned server to sleep (vLLM sleep mode level 1) so training can use the GPU."""
        self._owned_server().sleep(level=1)

    def wake_up(self) -> None:
        """Wake the owned server after training."""
        self._owned_server().wake_up()

    def _owned_server(self) -> VLLMServer:
        if self.server is None:
            raise RuntimeError("sleep/wake_up need a server tutorkd started (BackendConfig without base_url)")
        return self.server

    def _base_model(self) -> str:
        # Why model_extra: ``parent`` (set on LoRA adapters) is a vLLM field the OpenAI schema lacks.
        models = [m for m in self.client.models.list().data if (m.model_extra or {}).get("parent") is None]
        if not models:
            raise RuntimeError(f"server {self.client.base_url} lists no base model; pass model=<served name>")
        return models[0].id

    def _one(self, model: str, prompt: str, params: SamplingConfig, seed: int) -> Completion:
        import openai

        common = dict(model=model, max_tokens=params.max_tokens, temperature=params.temperature, top_p=1.0,
                      seed=seed)
        if params.stop:
            common["stop"] = list(params.stop)
        if self.endpoint == "chat":
            if params.logprobs:
                common["logprobs"] = True
            if (response_format := _response_format(params)) is not None:
                common["response_format"] = response_format
            create = self.client.chat.completions.create
            common["messages"] = [{"role": "user", "content": prompt}]
        else:
            create = self.client.completions.create
            common.update(prompt=prompt, logprobs=0 if params.logprobs else None,
                          extra_body=_structured_body(params))
        # Why only these: they are what the server or the wire can do to a request; anything else is a bug
        # here and raises under either ``on_failure``.
        try:
            response = create(**common)
            text, logprobs = _read(response, self.endpoint, params.logprobs)
        except (openai.APIError, json.JSONDecodeError, _BadResponse) as exc:
            kind = _failure_kind(exc)
            if self.on_failure == "raise" or kind is None:
                raise
            return self._failed(kind, exc)
        tokens_in, tokens_out = _tokens(response)
        with self._lock:
            self.usage = TeacherUsage(tokens_in=self.usage.tokens_in + tokens_in,
                                      tokens_out=self.usage.tokens_out + tokens_out,
                                      calls=self.usage.calls + 1)
        if not text and self.on_failure == "count":
            # Why keep the tokens: the server spent (and bills) them even though the reply is no data.
            return self._failed("empty", "a reply with no text", tokens_in, tokens_out)
        # Why an empty text is returned under "raise": a student's reply may legitimately be empty.
        return Completion(text=text, token_logprobs=logprobs, prompt_tokens=tokens_in,
                          completion_tokens=tokens_out)

    def _failed(self, kind: str, detail: object, tokens_in: int = 0, tokens_out: int = 0) -> Completion:
        """The empty, counted, logged ``Completion`` of a request that failed as ``kind``."""
        with self._lock:
            self._faults[kind] += 1
        message = str(detail)
        key = self.client.api_key
        if len(key) >= 8:  # Why: a server may echo the key in its error message; it is never logged.
            message = message.replace(key, "***")
        log.warning("request to %s failed (%s) after up to %d retries; counted, no data: %s",
                    self.client.base_url, kind, self.client.max_retries, message[:300])
        return Completion(text="", failure=kind, prompt_tokens=tokens_in, completion_tokens=tokens_out)

    def _model_for(self, version: StudentVersion | None) -> str:
        """The served name for ``version``, loading (or reloading) its adapter first when needed."""
        import openai

        if version is None or version.adapter_path is None:
            return self.model
        weights = Path(version.adapter_path) / "adapter_model.safetensors"
        now = (str(Path(version.adapter_path).resolve()), weights.stat().st_mtime_ns)
        before = self._adapters.get(version.name)
        if before == now:
            return version.name
        if before is not None:
            log.info("adapter %s now names %s (was %s): reloading", version.name, now[0], before[0])
            self._post("/unload_lora_adapter", {"lora_name": version.name})
        try:
            self._post("/load_lora_adapter", {"lora_name": version.name, "lora_path": now[0]})
        except openai.BadRequestError as exc:
            # Why: a server that outlived an earlier process (or run) still holds this name.
            if "already been loaded" not in str(exc):
                raise
            log.info("server already held adapter %s: replacing it with %s", version.name, now[0])
            self._post("/unload_lora_adapter", {"lora_name": version.name})
            self._post("/load_lora_adapter", {"lora_name": version.name, "lora_path": now[0]})
        self._adapters[version.name] = now
        return version.name

    def _post(self, path: str, body: dict[str, str]) -> None:
        import httpx

        self.client.post(path, body=body, cast_to=httpx.Response)


class _BadResponse(RuntimeError):
    """A 200 response that holds no completion: ``kind`` is ``empty`` or ``malformed_body``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _failure_kind(exc: Exception) -> str | None:
    """The ``Completion.failure`` kind of a failed request; ``None``: not a request failure (raise it)."""
    import openai

    if isinstance(exc, _BadResponse):
        return exc.kind
    if isinstance(exc, openai.APITimeoutError):  # before its base class, APIConnectionError
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.APIStatusError):
        return None if exc.status_code in _FATAL_STATUS else f"http_{exc.status_code}"
    if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError):
        return "malformed_body"
    return None


def _read(response: object, endpoint: str, logprobs: bool) -> tuple[str, tuple[float, ...]]:
    """The first choice's text ("" for none) and token logprobs; ``_BadResponse`` for any other shape.

    Why checked here: the ``openai`` client builds its response objects without validating them, so a
    body of the wrong shape arrives as a string, a list or a half-filled object.
    """
    from openai.types import Completion as TextBody
    from openai.types import CompletionChoice
    from openai.types.chat import ChatCompletion, ChatCompletionMessage
    from openai.types.chat.chat_completion import Choice

    chat = endpoint == "chat"
    body = ChatCompletion if chat else TextBody
    if not isinstance(response, body) or not isinstance(response.choices, list):
        raise _BadResponse("malformed_body", f"not a completion body: {str(response)[:200]!r}")
    if not response.choices:
        raise _BadResponse("empty", "a response with no choices")
    choice = response.choices[0]
    if chat and not (isinstance(choice, Choice) and isinstance(choice.message, ChatCompletionMessage)):
        raise _BadResponse("malformed_body", f"not a chat choice: {str(choice)[:200]!r}")
    if not chat and not isinstance(choice, CompletionChoice):
        raise _BadResponse("malformed_body", f"not a completion choice: {str(choice)[:200]!r}")
    text = (choice.message.content if chat else choice.text) or ""
    if not isinstance(text, str):
        raise _BadResponse("malformed_body", f"a non-text reply: {str(text)[:200]!r}")
    if not logprobs:
        return text, ()
    # Why catch AttributeError/TypeError: these lines only read the body, so they mean missing logprobs.
    try:
        if chat:
            return text, tuple(t.logprob for t in choice.logprobs.content)
        return text, tuple(choice.logprobs.token_logprobs)
    except (AttributeError, TypeError):
        raise _BadResponse("malformed_body", "a reply without the logprobs asked for") from None


def _tokens(response: TextBody | ChatCompletion) -> tuple[int, int]:
    """Prompt and generated tokens the server reports (a body ``_read`` accepted); (0, 0) where it
    reports none."""
    from openai.types import CompletionUsage

    # Why the type check: the client builds bodies without validating them, so ``usage`` may be a
    # dict or a string; and why not a failure: a bad ``usage`` costs only the token count, never the
    # reply's data.
    usage = response.usage
    if not isinstance(usage, CompletionUsage):
        return 0, 0
    return usage.prompt_tokens, usage.completion_tokens


def _structured_body(params: SamplingConfig) -> dict[str, object] | None:
    """vLLM's request fields for the completions endpoint: structured outputs and ``top_k`` off."""
    body: dict[str, object] = {"top_k": 0}
    if params.json_schema is not None:
        body["structured_outputs"] = {"json": json.loads(params.json_schema)}
    elif params.regex is not None:
        body["structured_outputs"] = {"regex": params.regex}
    return body


def _response_format(params: SamplingConfig) -> dict[str, object] | None:
    """The chat endpoint's JSON-schema response format (regex has no chat equivalent)."""
    if params.regex is not None:
        raise NotImplementedError("regex-constrained decoding needs endpoint='completions' on a vLLM server")
    if params.json_schema is None:
        return None
    schema = {"name": "answer", "schema": json.loads(params.json_schema)}
    return {"type": "json_schema", "json_schema": schema}


def student_backend(cfg: BackendConfig, model_path: str | Path, max_lora_rank: int, seed: int = 0,
                    log_file: str | Path | None = None, dtype: str = "auto") -> OpenAIBackend:
    """The student's backend for a ``kind: openai`` config: the server at ``cfg.base_url``, or a
    ``vllm serve`` of ``model_path`` started here (and stopped by ``close``)."""
    # Why on_failure "raise" (the default): a failed student request must never be scored as a wrong
    # answer; the run stops and is resumed.
    if cfg.base_url is not None:
        return OpenAIBackend(cfg.base_url, api_key_env=cfg.api_key_env, max_retries=cfg.max_retries)
    from tutorkd.llm.vllm_server import BASE_NAME, VLLMServer

    server = VLLMServer(model_path, max_lora_rank=max_lora_rank, max_model_len=cfg.max_model_len, dtype=dtype,
                        seed=seed, tensor_parallel_size=cfg.tensor_parallel_size,
                        data_parallel_size=cfg.data_parallel_size,
                        gpu_memory_utilization=cfg.gpu_memory_utilization,
                        sleep_mode=cfg.sleep_during_training, kv_cache_gib=cfg.kv_cache_gib,
                        log_file=log_file)
    try:
        return OpenAIBackend(server.url, BASE_NAME, api_key_env=cfg.api_key_env, server=server,
                             max_retries=cfg.max_retries)
    except BaseException:
        server.close()
        raise


def teacher_backend(cfg: TeacherLLMConfig) -> OpenAIBackend:
    """The teacher LLM of a ``backend: openai`` config: model ``cfg.model`` at ``cfg.base_url``. A request
    that fails after its retries comes back as a counted ``Completion.failure``: the teacher falls back as
    for malformed output instead of the run crashing."""
    if cfg.base_url is None:
        raise ValueError("a teacher LLM with backend openai needs base_url")
    return OpenAIBackend(cfg.base_url, cfg.model, api_key_env=cfg.api_key_env, endpoint=cfg.endpoint,
                         on_failure="count")
