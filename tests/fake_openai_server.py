"""A stand-in ``vllm serve`` for the server-death tests, run as its own process so it can be SIGKILLed.

    python tests/fake_openai_server.py PORT [--die-at N] [--requests FILE]

It answers what a run asks of a student's server: ``GET /v1/models`` (one base model), ``POST
/v1/load_lora_adapter`` and ``/v1/unload_lora_adapter``, and ``POST /v1/completions`` with ``A:<digit>``
(the digit a hash of the prompt, so every server answers the same) and one logprob per character, as a
character-level student's server would. With ``--die-at N`` the process SIGKILLs itself when the Nth
completion request arrives, before answering it: a crash with requests in flight. ``--requests FILE``
gets one line per completion request received (the tests count them to aim the crash).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def reply_text(prompt: str) -> str:
    """The answer every fake server gives to ``prompt``."""
    return f"A:{hashlib.sha256(prompt.encode()).digest()[0] % 10}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--die-at", type=int, default=None)
    parser.add_argument("--requests", type=Path, default=None)
    args = parser.parse_args()
    lock, seen = threading.Lock(), [0]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send({"object": "list", "data": [{"id": "base", "object": "model", "owned_by": "fake"}]})

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            if not self.path.endswith("/completions"):
                self.send({})  # adapter loading: accepted
                return
            with lock:
                seen[0] += 1
                if args.requests is not None:
                    with open(args.requests, "a") as f:
                        f.write(f"{seen[0]}\n")
                if seen[0] == args.die_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            text = reply_text(body["prompt"])
            logprobs = {"tokens": list(text), "token_logprobs": [-0.25] * len(text),
                        "top_logprobs": None, "text_offset": list(range(len(text)))}
            choice = {"index": 0, "text": text, "finish_reason": "stop",
                      "logprobs": logprobs if body.get("logprobs") is not None else None}
            self.send({"id": "c", "object": "text_completion", "created": 0, "model": body["model"],
                       "choices": [choice],
                       "usage": {"prompt_tokens": 5, "completion_tokens": len(text), "total_tokens": 9}})

        def send(self, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever(0.05)


if __name__ == "__main__":
    main()
