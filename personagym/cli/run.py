"""`personagym run` (dynamic mode) and `personagym benchmark` (the fixed benchmark-v1 questions)."""

from __future__ import annotations

import asyncio
import gc
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from personagym import defaults
from personagym.cli import db_option, db_path, settings_from
from personagym.errors import UserError

if TYPE_CHECKING:
    from personagym.pipeline.evaluate import Prepared

# Every option a run takes; the config file may set any of them by the same name (dashes or
# underscores), and a flag given on the command line wins. Defaults are shown from personagym.defaults,
# the one place they are set.
RUN_OPTIONS: list[Callable] = [
    click.option("--models", metavar="SPEC", help="One model for every role not set on its own (e.g. local, for a smoke test)."),
    click.option("--agent", metavar="SPEC", help="The agent under test: a model spec, e.g. openai:gpt-4o-mini or local."),
    click.option("--agent-base-url", metavar="URL[,URL]", help="Your own OpenAI-compatible chat endpoint(s) serving the agent; several share the load."),
    click.option("--persona-field", metavar="NAME", help="Send the persona in this request body field, not a system prompt."),
    click.option("--agent-template", metavar="FILE", help="System prompt template for the agent; must contain {persona}."),
    click.option("--judges", metavar="SPEC,SPEC", help=f"Judge models (default {','.join(defaults.JUDGES)})."),
    click.option("--generator", metavar="SPEC", help=f"Model that picks environments and writes questions (default {defaults.GENERATOR})."),
    click.option("--example-model", metavar="SPEC", help=f"Model that writes the score examples (default {defaults.EXAMPLE_MODEL})."),
    click.option("--tasks", metavar="NAME,...", help="Only these tasks, e.g. expected_action,linguistic_habits (default all five)."),
    click.option("--questions-per-task", type=int, metavar="N", help=f"Questions per task (default {defaults.QUESTIONS_PER_TASK}, as in the paper)."),
    click.option("--environments", "max_environments", type=int, metavar="N", help=f"Most settings chosen per persona (default {defaults.ENVIRONMENTS})."),
    click.option("--judge-batch", type=int, metavar="N", help=f"Question/answer pairs per judge call (default {defaults.JUDGE_BATCH}; 1 grades each alone)."),
    click.option("--example-batch", type=int, metavar="N", help=f"Questions per score-example call (default {defaults.EXAMPLE_BATCH}, as upstream; 1 writes each alone)."),
    click.option("--rubrics", type=click.Choice(["own", "upstream"]), help="Grade with this project's rubrics (default) or upstream's, downloaded at the pinned commit and verified (closest to the paper)."),
    click.option("--rubrics-dir", metavar="DIR", help="A local copy of upstream's method files for --rubrics upstream (default: the downloaded copy)."),
    click.option("--judge-samples", type=int, metavar="K", help=f"Grade every item K times per judge and average the draws (default {defaults.JUDGE_SAMPLES})."),
    click.option("--judge-order", type=click.Choice(["shuffled", "fixed"]), help="Items in a judge batch in a seeded shuffled order (default) or in upstream's fixed order."),
    click.option("--dialogues", type=int, metavar="N", help=f"Also hold N conversations per persona under a pressure tactic, every reply graded (default {defaults.DIALOGUES}: none; docs/dialogues.md)."),
    click.option("--turns", type=int, metavar="T", help=f"User turns per conversation (default {defaults.TURNS})."),
    click.option("--interlocutor", metavar="SPEC", help="Model that plays the user in conversations (default: the generator's model)."),
    click.option("--agent-temperature", type=float, metavar="T", help=f"Agent sampling temperature (default {defaults.AGENT_TEMPERATURE})."),
    click.option("--agent-top-p", type=float, metavar="P", help=f"Agent top_p (default {defaults.AGENT_TOP_P})."),
    click.option("--agent-max-tokens", type=int, metavar="N", help=f"Longest agent answer in tokens (default {defaults.AGENT_MAX_TOKENS})."),
    click.option("--catalog", metavar="FILE", help="Your own environment catalog (.json or .txt)."),
    click.option("--concurrency", type=int, metavar="N", help=f"Calls in flight per model (default {defaults.CONCURRENCY})."),
    click.option("--rpm", type=float, metavar="N", help="Requests per minute per model (default unlimited)."),
    click.option("--tpm", type=float, metavar="N", help="Tokens per minute per model (default unlimited)."),
    click.option("--batch", is_flag=True, help="Send calls as provider batch jobs (OpenAI Batch, Anthropic Message Batches): half price, may take hours; resumable."),
    click.option("--batch-poll", type=float, metavar="SECONDS", help=f"First look at a running batch job after this long (default {defaults.BATCH_POLL:g}; then up to a minute apart)."),
    click.option("--max-attempts", type=int, metavar="N", help=f"Attempts per call before it counts as failed (default {defaults.MAX_ATTEMPTS})."),
    click.option("--timeout", type=float, metavar="SECONDS", help=f"Longest wait for one attempt (default {defaults.TIMEOUT:g})."),
    click.option("--prices", metavar="FILE", help="TOML price table adding to or overriding the built-in one."),
    click.option("--openai-base-url", metavar="URL[,URL]", help="Base URL(s) for openai: specs (vLLM, Ollama, ...); several share the load."),
    click.option("--anthropic-base-url", metavar="URL", help="Base URL for anthropic: specs."),
    click.option("--structured-output", type=click.Choice(["auto", "json_schema", "json_object", "tools", "prompt"]), help="How OpenAI-compatible servers are asked for JSON (default auto: the strongest shape each server takes; docs/servers.md)."),
    click.option("--run", "run_name", metavar="NAME", help="Name of the run; the same name resumes it (default: derived from the settings)."),
    click.option("--shard", metavar="K/N", help="Only shard K of N: personas K, K+N, K+2N... (default --db personagym.shard-K-of-N.db); join the shards with `personagym merge`."),
    db_option,
    click.option("--dry-run", is_flag=True, help="Print the planned calls and a token and cost estimate; call nothing."),
    click.option("--quiet", is_flag=True, help="No progress lines."),
]

# What the CLI reads itself rather than passing to the library.
_CLI_ONLY = ("openai_base_url", "anthropic_base_url", "structured_output", "run_name", "db", "dry_run", "quiet", "agent_template", "prices")


def run_options(fn: Callable) -> Callable:
    for option in reversed(RUN_OPTIONS):
        fn = option(fn)
    return fn


def _merged(ctx: click.Context, flags: dict[str, Any]) -> dict[str, Any]:
    """Flags win; the config file fills what they leave unset."""
    config = {k.replace("-", "_"): v for k, v in ctx.obj["config"].items() if not isinstance(v, dict)}
    return {k: (v if v is not None and v is not False else config.get(k, v)) for k, v in flags.items()}


def _config(ctx: click.Context, o: dict[str, Any]):
    """The run's config from flags and the config file, parsed and checked by the library (whose
    messages name parameters; `main` tells them as flags)."""
    from personagym.llm.usage import PriceTable
    from personagym.pipeline import RunConfig

    given = {k: v for k, v in o.items() if k not in _CLI_ONLY and v is not None and v is not False and v != ""}
    if o.get("agent_template"):
        path = Path(o["agent_template"])
        if not path.is_file():
            state = "is a folder" if path.is_dir() else "does not exist" if not path.exists() else "is not a regular file"
            raise UserError(f"--agent-template {path} {state}: give the path of a text file containing {{persona}}")
        given["agent_template"] = path.read_text()
    given["settings"] = settings_from(
        ctx.obj["config"], o.get("openai_base_url"), o.get("anthropic_base_url"), o.get("structured_output")
    )
    given["prices"] = PriceTable.load(o.get("prices"))
    given["progress"] = not o.get("quiet")
    if not (given.get("agent") or given.get("models")):
        raise UserError("no agent to evaluate: pass --agent SPEC (e.g. --agent openai:gpt-4o-mini, or local)")
    return RunConfig.of(given.pop("agent", None), **given)


def _go(ctx: click.Context, o: dict[str, Any], personas: list[str] | None, benchmark=None) -> None:
    from personagym.pipeline import execute, prepare
    from personagym.pipeline.shards import shard_db
    from personagym.summary import summary_lines

    config = _config(ctx, o)
    prepared = prepare(personas, config, benchmark, o.get("run_name"))
    db = db_path(ctx, o.get("db") or (shard_db(*prepared.shard) if prepared.shard else None))
    if o.get("dry_run"):
        from personagym.pipeline.plan import plan_lines

        for line in ([shard_line(prepared, db)] if prepared.shard else []) + plan_lines(prepared, config.prices):
            click.echo(line)
        return
    _collect_garbage_rarely()
    results = asyncio.run(execute(prepared, db))
    for line in summary_lines(results) + ([shard_line(prepared, db)] if prepared.shard else []):
        click.echo(line)
    # A run that ended with failures but a PersonaScore succeeded, labelled incomplete; one that
    # failures left without a PersonaScore has nothing to use: exit 1 (README, "Errors and exit codes").
    if results["scores"]["persona_score"] is None:
        sys.exit(1)


def shard_line(prepared: "Prepared", db: str) -> str:
    """What a shard run covers and where it goes, for --dry-run and the end of the run."""
    assert prepared.shard is not None and prepared.positions is not None
    k, n = prepared.shard
    shown = ", ".join(str(p + 1) for p in prepared.positions[:6]) + (", ..." if len(prepared.positions) > 6 else "")
    return (
        f"shard {k}/{n}: {len(prepared.positions)} persona(s), at positions {shown} of the whole list, in {db}; "
        f"when all {n} shards are done, join them with `personagym merge OUT.db SHARD.db...`"
    )


def _collect_garbage_rarely() -> None:
    """A run holds thousands of live tasks and replies, which Python's cycle collector, at its
    defaults, walks hundreds of times: about a tenth of the client's CPU per call (bench/RESULTS.md,
    "CPU per call"). What is loaded by now (the SDKs, the reply types) lives as long as the
    process, so it is taken out of the collector's sight, and young objects are collected less often.
    The command line only: a library user's process keeps its own settings."""
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)


@click.command("run")
@click.option("--persona", "personas", multiple=True, metavar="TEXT", help="A persona to evaluate (repeatable).")
@click.option("--personas", "personas_file", metavar="FILE", help="Personas from a .txt, .json, .jsonl or .csv file.")
@run_options
@click.pass_context
def run_command(ctx: click.Context, personas: tuple[str, ...], personas_file: str | None, **flags: Any) -> None:
    """Evaluate an agent on personas (dynamic mode: environments and questions are generated).

    \b
    Examples:
      personagym run --models local --persona "A 72-year-old doctor from Tokyo who loves hiking" \\
          --questions-per-task 2
      personagym run --agent openai:gpt-4o-mini --personas personas.txt --run mini-v1
      personagym run --agent openai:my-bot --agent-base-url https://bots.example.com/v1 \\
          --persona-field persona --personas personas.csv
      personagym run --agent openai:gpt-4o-mini --personas personas.txt --dry-run
    """
    from personagym.personas import clean_persona, load_personas

    o = _merged(ctx, flags)
    texts = [clean_persona(p, where=f"--persona {i + 1}") for i, p in enumerate(personas)]
    if personas_file or ctx.obj["config"].get("personas"):
        texts += load_personas(personas_file or ctx.obj["config"]["personas"])
    if not texts:
        raise UserError("no personas given: pass --persona TEXT (repeatable) or --personas FILE")
    _go(ctx, o, texts)


@click.group("benchmark", invoke_without_command=True)
@click.option("--benchmark-dir", metavar="DIR", help="A benchmark-v1 directory in the upstream layout (default: the downloaded copy).")
@click.option("--limit", type=int, metavar="N", help="Only the first N personas.")
@run_options
@click.pass_context
def benchmark_command(ctx: click.Context, benchmark_dir: str | None, limit: int | None, **flags: Any) -> None:
    """Run benchmark-v1: 200 personas x 5 tasks x 10 fixed questions, comparable with the paper.

    \b
    Examples:
      personagym benchmark download
      personagym benchmark --agent openai:gpt-6-luna --limit 10 --dry-run
      personagym benchmark --agent openai:gpt-6-luna --judges openai:gpt-6.2-sol --run luna-bench
      personagym benchmark --agent openai:gpt-6-luna --rubrics upstream --limit 20   # closest to the paper
    """
    if ctx.invoked_subcommand is not None:
        return
    from personagym.benchmark import default_benchmark_dir, load_benchmark

    o = _merged(ctx, flags)
    if limit is not None and limit < 1:
        raise UserError("--limit must be at least 1")
    where = Path(benchmark_dir or ctx.obj["config"].get("benchmark_dir") or default_benchmark_dir())
    bench = load_benchmark(where, limit)
    if o.get("rubrics") == "upstream" and not o.get("rubrics_dir"):
        o["rubrics_dir"] = str(where / "upstream-method")  # downloaded beside the benchmark's questions
    _go(ctx, o, None, bench)


@benchmark_command.command("download")
@click.option("--to", "dest", metavar="DIR", help="Where to put it (default: the user cache).")
@click.option("--from", "source", metavar="URL", help="A mirror with upstream's layout (default: GitHub at the pinned commit).")
def benchmark_download(dest: str | None, source: str | None) -> None:
    """Download benchmark-v1 and upstream's rubric files (for --rubrics upstream) from upstream at the
    pinned commit, verifying every file's sha256.

    \b
    Examples:
      personagym benchmark download
      personagym benchmark download --to ./benchmark-v1
    """
    from personagym.benchmark import UPSTREAM_RAW, download_benchmark, download_method
    from personagym.method.upstream import METHOD_DIR

    def progress(done: int, total: int) -> None:
        if done == total or done % 20 == 0:
            click.echo(f"{done}/{total} files", err=True)

    path = download_benchmark(dest, base_url=source or UPSTREAM_RAW, progress=progress)
    click.echo(f"benchmark-v1 is in {path}")
    method = download_method(path / METHOD_DIR, base_url=source or UPSTREAM_RAW)
    click.echo(f"upstream's rubric and grading-prompt files (for --rubrics upstream) are in {method}")
