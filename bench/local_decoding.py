"""Structured (grammar-constrained) decoding speed of the embedded model, decoder against decoder.

    python bench/local_decoding.py [--runs 5] [--decoders stock@2,grammar-first@2,stock,grammar-first,llguidance,none]

Each run sends the same three structured requests the pipeline sends to `local` (score examples,
questions, a judge's verdict; the prompts and schemas of personagym.method, at temperature 0) to
every decoder in turn, interleaved so machine load falls on all of them alike, and prints the
generation rate: completion tokens / (call time - prompt evaluation time, from llama.cpp's own
counters), so prompt length does not blur the figure. Decoders:

- stock: llama-cpp-python's high-level API as it is (the grammar masks all 49k tokens at every step);
- grammar-first: personagym's local provider (the sampled token is checked; the full mask only on refusal);
- llguidance: llguidance's token masks (`pip install llguidance`), computed at every step, applied
  to the logits before the same sampling chain; skipped when it is not installed;
- none: the same prompts with no schema (the ceiling: plain decoding).

A decoder runs with the provider's thread count (`local.threads()`), or with N threads as `NAME@N`:
`stock@2` is the provider before this bench (stock decoding, always two threads).

Every structured reply is read as the gateway reads it (strict types) and any that does not validate
is counted, apart from those cut at the token cap, which are counted on their own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import llama_cpp.llama_cpp as raw
from llama_cpp import Llama

from personagym.llm.jsonschema import json_schema
from personagym.llm.providers import local
from personagym.llm.reading import parse_structured
from personagym.method import ScoreExamples, prompts
from personagym.method.environments import load_catalog
from personagym.method.tasks import TASKS
from personagym.pipeline.judging import verdicts_schema
from personagym.pipeline.questions import questions_schema

PERSONA = "A 72-year-old doctor from Tokyo who loves hiking"
QUESTION = "You are at a mountain hut when a hiker twists an ankle on the trail. What do you do first, and why?"
ANSWER = "First I would sit them down and look at the ankle, then wrap it firmly and keep it raised."
MAX_TOKENS = 400  # per request: the rate is per token, and 400 keeps five runs of the slowest decoder under an hour


def requests() -> list[tuple[str, list[dict[str, str]], Any]]:
    task = TASKS[0]
    examples = prompts.score_examples(PERSONA, QUESTION, task)
    questions = prompts.question_writing(PERSONA, load_catalog(None)[:3], task, 1)
    judging = prompts.judging(PERSONA, task, [(QUESTION, ANSWER)], [None])
    as_dicts = lambda messages: [{"role": role, "content": content} for role, content in messages]  # noqa: E731
    return [
        ("examples", as_dicts(examples), ScoreExamples),
        ("questions", as_dicts(questions), questions_schema(1)),
        ("verdict", as_dicts(judging), verdicts_schema(1)),
    ]


def load(cls: type, threads: int) -> Llama:
    """As the provider loads it (no extra buffer types), with the class and threads given."""
    return local.load_without_extra_buffers(local.default_model_path(), cls, threads)


def llguidance_llama() -> type | None:
    """A Llama whose grammar sampler is llguidance: a full token mask at every step, from the JSON schema."""
    try:
        import llguidance
        import llguidance.llamacpp
        import numpy as np
    except ImportError:
        return None

    class Masked:
        def __init__(self, chain: Any, matcher: Any, n_vocab: int):
            self.chain, self.matcher, self.n_vocab = chain, matcher, n_vocab
            self.candidates = local._Candidates(n_vocab)
            self.mask = np.zeros((n_vocab + 31) // 32, dtype=np.int32)

        def sample(self, ctx: Any, idx: int = -1) -> int:
            import ctypes

            candidates = self.candidates.fresh(ctx.ctx, idx)
            self.matcher.unsafe_compute_mask_ptr(self.mask.ctypes.data, self.mask.nbytes)
            allowed = np.unpackbits(self.mask.view(np.uint8), bitorder="little")[: self.n_vocab].astype(bool)
            self.candidates.table["logit"][~allowed] = -np.inf
            raw.llama_sampler_apply(self.chain.sampler, ctypes.byref(candidates))
            token = candidates.data[candidates.selected].id
            self.matcher.consume_token(token)
            raw.llama_sampler_accept(self.chain.sampler, token)
            return token

    class GuidedLlama(Llama):
        tokenizer = None
        schema: Any = None

        def _init_sampler(self, **kwargs: Any) -> Any:
            kwargs.pop("grammar", None)
            chain = super()._init_sampler(**kwargs)
            if GuidedLlama.schema is None:
                return chain
            if GuidedLlama.tokenizer is None:
                GuidedLlama.tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(self._model.vocab)
            grammar = llguidance.LLMatcher.grammar_from_json_schema(GuidedLlama.schema)
            matcher = llguidance.LLMatcher(GuidedLlama.tokenizer, grammar)
            if matcher.is_error():
                raise ValueError(matcher.get_error())
            return Masked(chain, matcher, self._n_vocab)

    return GuidedLlama


def timed(llm: Llama, messages: list[dict[str, str]], schema: Any, guided: bool) -> tuple[str, int, float]:
    """(reply, completion tokens, seconds of generation: the call's wall time less the prompt evaluation
    time from llama.cpp's own counters)."""
    params: dict[str, Any] = {"messages": messages, "temperature": 0.0, "max_tokens": MAX_TOKENS, "seed": 1}
    if schema is not None and not guided:
        params["response_format"] = {"type": "json_object", "schema": json_schema(schema)}
    if guided:
        type(llm).schema = None if schema is None else json.dumps(json_schema(schema))
    llm.reset()
    raw.llama_perf_context_reset(llm._ctx.ctx)
    started = time.perf_counter()
    reply = llm.create_chat_completion(**params)
    wall = time.perf_counter() - started
    prompt_seconds = raw.llama_perf_context(llm._ctx.ctx).t_p_eval_ms / 1000
    return reply["choices"][0]["message"]["content"] or "", reply["usage"]["completion_tokens"], wall - prompt_seconds


def valid(schema: Any, text: str) -> bool:
    """As the gateway reads a reply (strict types; raw line breaks inside strings tolerated)."""
    try:
        parse_structured(schema, text)
        return True
    except ValueError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--decoders", default="stock@2,grammar-first@2,stock,grammar-first,llguidance,none")
    args = parser.parse_args()
    guided_class = llguidance_llama()
    classes: dict[str, tuple[type, bool]] = {
        "stock": (Llama, False),
        "grammar-first": (local._grammar_first_llama(), False),
        "none": (Llama, False),
    }
    if guided_class is not None:
        classes["llguidance"] = (guided_class, True)
    chosen = [d for d in args.decoders.split(",") if d.split("@")[0] in classes]
    models: dict[str, tuple[Llama, bool]] = {}
    for name in chosen:
        kind, _, given = name.partition("@")
        cls, guided = classes[kind]
        models[name] = (load(cls, int(given) if given else local.threads()), guided)
    print(f"load average {os.getloadavg()[0]:.1f}, provider's threads {local.threads()}, {args.runs} runs", flush=True)
    rates: dict[str, list[float]] = {name: [] for name in chosen}
    invalid: dict[str, int] = dict.fromkeys(chosen, 0)
    cut: dict[str, int] = dict.fromkeys(chosen, 0)
    for run in range(1, args.runs + 1):
        for name in chosen:
            llm, guided = models[name]
            tokens, seconds = 0, 0.0
            for label, messages, schema in requests():
                structured = not name.startswith("none")
                text, n, generating = timed(llm, messages, schema if structured else None, guided)
                tokens, seconds = tokens + n, seconds + generating
                if structured and n >= MAX_TOKENS:
                    cut[name] += 1
                elif structured and not valid(schema, text):
                    invalid[name] += 1
            rates[name].append(tokens / seconds)
            print(f"run {run} {name:<16} {tokens:4d} tokens in {seconds:6.1f} s = {tokens / seconds:5.1f} tokens/s, "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
    print("\ndecoder           tokens/s min-max (median)   invalid replies, cut at max_tokens")
    for name in chosen:
        r = rates[name]
        print(f"{name:<17} {min(r):6.1f}-{max(r):<6.1f} ({statistics.median(r):5.1f})      "
              f"{invalid[name] if not name.startswith('none') else '-'}, {cut[name]}")


if __name__ == "__main__":
    main()
