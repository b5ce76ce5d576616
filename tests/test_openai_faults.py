"""A faulty OpenAI-compatible endpoint: HTTP errors, timeouts, empty and truncated bodies are counted per
kind, never crash a teacher and never become data; the student's setting still raises.

A fake server (``ThreadingHTTPServer`` on loopback) answers each prompt by a script: one behaviour per
attempt, the last repeated, so the client's retries are visible in its request counts. Retry delays are
kept short with the ``retry-after-ms`` header the ``openai`` client honours; timeouts use a 0.4 s client
timeout.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import BaseModel

from tutorkd.protocols import SamplingConfig

openai = pytest.importorskip("openai")

from tutorkd.llm.openai_backend import OpenAIBackend  # noqa: E402  (needs openai)
from tutorkd.llm.structured import StructuredLLM  # noqa: E402

TIMEOUT_S = 0.4
KEY = "sk-test-secret-0123456789"
PARAMS = SamplingConfig(max_tokens=16)


class _Guess(BaseModel):
    answer: int


class FakeServer:
    """The scripted server: ``script[prompt]`` lists its behaviours per attempt (``default`` for any other
    prompt); ``requests`` counts the requests per prompt."""

    def __init__(self) -> None:
        self.script: dict[str, Sequence[str]] = {}
        self.default: Sequence[str] = ("ok",)
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                chat = "messages" in body
                prompt = body["messages"][0]["content"] if chat else body["prompt"]
                with fake._lock:
                    attempt = fake.requests[prompt]
                    fake.requests[prompt] += 1
                plan = fake.script.get(prompt, fake.default)
                fake.answer(self, plan[min(attempt, len(plan) - 1)], prompt, chat)

            def log_message(self, *args: object) -> None:
                pass  # Why: keeps the test output to what the client sees

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.http.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def answer(self, handler: BaseHTTPRequestHandler, behaviour: str, prompt: str, chat: bool) -> None:
        """Send ``behaviour``'s response: ``ok``, ``empty_text``, ``slow``, ``no_choices``, ``truncated``,
        ``cut`` (the connection closes halfway through the announced body), or an HTTP status (``500``,
        ``429``, ``401``) whose error message echoes the request's key."""
        if behaviour.isdigit():
            echo = handler.headers.get("Authorization", "")
            error = {"error": {"message": f"scripted failure for {echo}", "type": "server_error"}}
            self.send(handler, int(behaviour), json.dumps(error).encode(), {"retry-after-ms": "20"})
            return
        if behaviour == "slow":
            time.sleep(3 * TIMEOUT_S)  # the client has given up by now
        text = "" if behaviour == "empty_text" else json.dumps({"answer": 4, "echo": prompt})
        choice = ({"index": 0, "finish_reason": "stop", "logprobs": None,
                   "message": {"role": "assistant", "content": text}} if chat
                  else {"index": 0, "finish_reason": "stop", "logprobs": None, "text": text})
        usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
        reply = {"id": "c", "object": "chat.completion" if chat else "text_completion", "created": 0,
                 "model": "m", "choices": [] if behaviour == "no_choices" else [choice], "usage": usage}
        data = json.dumps(reply).encode()
        if behaviour == "truncated":
            data = data[: len(data) // 2]  # a complete HTTP response whose JSON stops halfway
        self.send(handler, 200, data, cut=behaviour == "cut")

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, data: bytes,
             headers: dict[str, str] | None = None, cut: bool = False) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data[: len(data) // 2] if cut else data)
            handler.close_connection = True
        except OSError:
            pass  # Why: the client of a ``slow`` answer has closed the connection

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    fake.close()


def backend(server: FakeServer, on_failure: str = "count", endpoint: str = "completions",
            max_retries: int = 1, monkeypatch: pytest.MonkeyPatch | None = None) -> OpenAIBackend:
    """An ``OpenAIBackend`` on the fake server, one request at a time (a deterministic order)."""
    env = "TUTORKD_FAULTS_TEST_KEY"
    if monkeypatch is not None:
        monkeypatch.setenv(env, KEY)
    return OpenAIBackend(server.url, "m", api_key_env=env, endpoint=endpoint, max_retries=max_retries,
                         timeout_s=TIMEOUT_S, concurrency=1, on_failure=on_failure)


def echo(text: str) -> str:
    return json.loads(text)["echo"]


def test_each_fault_kind_is_counted_once_and_the_valid_replies_keep_their_places(
        server: FakeServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    prompts = ["first", "p500", "p429", "slow", "cut", "no_choices", "truncated", "empty_text", "last"]
    server.script = {p: (p.removeprefix("p"),) for p in prompts[1:-1]}
    llm = backend(server, monkeypatch=monkeypatch)
    with caplog.at_level(logging.WARNING, logger="tutorkd.llm.openai_backend"):
        out = llm.generate(prompts, PARAMS)
    assert [c.failure for c in out] == [None, "http_500", "http_429", "timeout", "connection", "empty",
                                        "malformed_body", "empty", None]
    assert echo(out[0].text) == "first" and echo(out[-1].text) == "last"
    assert all(c.text == "" and c.token_logprobs == () for c in out[1:-1])
    # Why tokens on empty_text only: the server answered (and billed) it; the others never answered.
    assert [(c.prompt_tokens, c.completion_tokens) for c in out[1:-1]] == [(0, 0)] * 6 + [(5, 3)]
    assert llm.faults == {"http_500": 1, "http_429": 1, "timeout": 1, "connection": 1, "empty": 2,
                          "malformed_body": 1}
    # One retry on errors, timeouts and cut connections (max_retries=1); a complete 200, however bad its
    # body, is never retried.
    assert server.requests == {"first": 1, "p500": 2, "p429": 2, "slow": 2, "cut": 2, "no_choices": 1,
                               "truncated": 1, "empty_text": 1, "last": 1}
    assert (llm.usage.calls, llm.usage.tokens_in, llm.usage.tokens_out) == (3, 15, 9)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 7 and all(kind in " ".join(warned) for kind in llm.faults)
    assert KEY not in caplog.text and "***" in caplog.text  # the 500's message echoed the key
    llm.close()


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_a_failure_within_the_retries_is_no_fault(server: FakeServer, endpoint: str) -> None:
    server.script = {"flaky": ("500", "429", "ok")}
    llm = backend(server, endpoint=endpoint, max_retries=2)
    (reply,) = llm.generate(["flaky"], PARAMS)
    assert (echo(reply.text), reply.failure, llm.faults) == ("flaky", None, {})
    assert server.requests["flaky"] == 3


def test_the_chat_endpoint_counts_the_same_kinds(server: FakeServer) -> None:
    prompts = ["p500", "no_choices", "truncated", "empty_text", "fine"]
    server.script = {p: (p.removeprefix("p"),) for p in prompts[:-1]}
    llm = backend(server, endpoint="chat", max_retries=0)
    out = llm.generate(prompts, PARAMS)
    assert [c.failure for c in out] == ["http_500", "empty", "malformed_body", "empty", None]
    assert echo(out[-1].text) == "fine" and llm.faults == {"http_500": 1, "empty": 2, "malformed_body": 1}


def test_the_student_setting_raises_after_the_retries_and_keeps_an_empty_reply(server: FakeServer) -> None:
    server.script = {"p500": ("500",), "truncated": ("truncated",), "empty_text": ("empty_text",),
                     "no_choices": ("no_choices",)}
    llm = backend(server, on_failure="raise")
    with pytest.raises(openai.InternalServerError):
        llm.generate(["p500"], PARAMS)
    assert server.requests["p500"] == 2
    with pytest.raises(json.JSONDecodeError):  # what the openai client raises for a truncated body
        llm.generate(["truncated"], PARAMS)
    with pytest.raises(RuntimeError, match="no choices"):
        llm.generate(["no_choices"], PARAMS)
    (reply,) = llm.generate(["empty_text"], PARAMS)  # a student's reply may be empty: returned as is
    assert (reply.text, reply.failure, llm.faults) == ("", None, {})


def test_a_wrong_key_and_a_programming_error_raise_even_when_counting(server: FakeServer) -> None:
    server.script = {"denied": ("401",)}
    llm = backend(server)
    with pytest.raises(openai.AuthenticationError):  # no retry or fallback fixes a wrong key
        llm.generate(["denied"], PARAMS)
    with pytest.raises(json.JSONDecodeError):  # a broken schema is a bug here, not a server fault
        llm.generate(["any"], SamplingConfig(max_tokens=4, json_schema="{not json"))
    with pytest.raises(ValueError, match="on_failure"):
        backend(server, on_failure="ignore")
    assert llm.faults == {} and server.requests == {"denied": 1}


def test_structured_llm_counts_failed_requests_as_invalid_and_parses_none(server: FakeServer) -> None:
    prompts = ["good", "p500", "no_choices", "truncated", "p429"]
    server.script = {p: (p.removeprefix("p"),) for p in prompts[1:]}
    llm = StructuredLLM(lambda: backend(server, max_retries=0), PARAMS, structured=True)
    replies = llm.ask(prompts, _Guess, _Guess.model_json_schema())
    assert replies[0].value == _Guess(answer=4) and replies[0].error is None
    assert [(r.value, r.error, r.text) for r in replies[1:]] == [
        (None, "request_failed:http_500", ""), (None, "request_failed:empty", ""),
        (None, "request_failed:malformed_body", ""), (None, "request_failed:http_429", "")]
    assert llm.failures == {"http_500": 1, "empty": 1, "malformed_body": 1, "http_429": 1}
    assert llm.usage.calls == 5 and llm.usage.tokens_out == 3  # only the good reply spent tokens
    llm.close()


def test_a_teacher_policy_falls_back_on_a_failed_request(server: FakeServer) -> None:
    from feedbacks import feedback

    from tutorkd.agents.dataenvgym.llm_policies import LLMSkillListPolicy
    from tutorkd.agents.dataenvgym.policies import SkillListPolicy
    from tutorkd.config import SkillPolicyConfig
    from tutorkd.environments.arithmetic import ArithmeticDomain

    server.default = ("503",)
    domain = ArithmeticDomain()
    llm = StructuredLLM(lambda: backend(server, max_retries=0), PARAMS, structured=True)
    policy = LLMSkillListPolicy(llm, SkillListPolicy(100, "rationale", SkillPolicyConfig()))
    plan = policy.plan(feedback(domain, {"add.carry": 0.2, "sub.borrow": 0.5}))
    assert plan.total == 100 and policy.log.used == "heuristic skill-list"
    assert policy.invalid == {"request_failed:http_503": 1} and policy.log.error == "request_failed:http_503"
    llm.close()


@pytest.mark.parametrize(("usage", "counted"), [
    ({"usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}, (5, 3)),
    ({}, (0, 0)),                   # a server that reports no usage
    ({"usage": "junk"}, (0, 0)),    # the client builds bodies unvalidated: a usage of the wrong shape
])
def test_token_counts_come_only_from_a_usage_of_the_right_shape(usage: dict,
                                                                counted: tuple[int, int]) -> None:
    from openai.types import Completion as TextBody

    from tutorkd.llm.openai_backend import _tokens

    body = TextBody.construct(id="c", object="text_completion", created=0, model="m", choices=[], **usage)
    assert _tokens(body) == counted
