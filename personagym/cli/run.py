"""`personagym run` (dynamic mode) and `personagym benchmark` (the fixed benchmark-v1 questions)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, Callable

import click

from personagym.cli import cli, db_option, db_path, settings_from
from personagym.errors import UserError

# Every option a run takes; the config file may set any of them by the same name (dashes or
# underscores), and a flag given on the command line wins.
RUN_OPTIONS: list[Callable] = [
    click.option("--models", metavar="SPEC", help="One model for every role not set on its own (e.g. local, for a smoke test)."),
    click.option("--agent", metavar="SPEC", help="The agent under test: a model spec, e.g. openai:gpt-4o-mini or local."),
    click.option("--agent-base-url", metavar="URL[,URL]", help="Your own OpenAI-compatible chat endpoint(s) serving the agent; several share the load."),
    click.option("--persona-field", metavar="NAME", help="Send the persona in this request body field, not a system prompt."),
    click.option("--agent-template", metavar="FILE", help="System prompt template for the agent; must contain {persona}."),
    click.option("--judges", metavar="SPEC,SPEC", help="Judge models (default openai:gpt-4o,anthropic:claude-sonnet-4-5)."),
    click.option("--generator", metavar="SPEC", help="Model that picks environments and writes questions (default openai:gpt-4o)."),
    click.option("--example-model", metavar="SPEC", help="Model that writes the score examples (default openai:gpt-4o)."),
    click.option("--tasks", metavar="NAME,...", help="Only these tasks, e.g. expected_action,linguistic_habits (default all five)."),
    click.option("--questions-per-task", type=int, metavar="N", help="Questions per task (default 10, as in the paper)."),
    click.option("--environments", "max_environments", type=int, metavar="N", help="Most settings chosen per persona (default 5)."),
    click.option("--judge-batch", type=int, metavar="N", help="Question/answer pairs per judge call (default 5; 1 grades each alone)."),
    click.option("--agent-temperature", type=float, metavar="T", help="Agent sampling temperature (default 0.9)."),
    click.option("--agent-top-p", type=float, metavar="P", help="Agent top_p (default 0.9)."),
    click.option("--agent-max-tokens", type=int, metavar="N", help="Longest agent answer in tokens (default 600)."),
    click.option("--catalog", metavar="FILE", help="Your own environment catalog (.json or .txt)."),
    click.option("--concurrency", type=int, metavar="N", help="Calls in flight per model (default 16)."),
    click.option("--rpm", type=float, metavar="N", help="Requests per minute per model (default unlimited)."),
    click.option("--tpm", type=float, metavar="N", help="Tokens per minute per model (default unlimited)."),
    click.option("--batch", is_flag=True, help="Send calls as provider batch jobs (OpenAI Batch, Anthropic Message Batches): half price, may take hours; resumable."),
    click.option("--batch-poll", type=float, metavar="SECONDS", help="First look at a running batch job after this long (default 5; then up to a minute apart)."),
    click.option("--max-attempts", type=int, metavar="N", help="Attempts per call before it counts as failed (default 6)."),
    click.option("--timeout", type=float, metavar="SECONDS", help="Longest wait for one attempt (default 120)."),
    click.option("--prices", metavar="FILE", help="TOML price table adding to or overriding the built-in one."),
    click.option("--openai-base-url", metavar="URL[,URL]", help="Base URL(s) for openai: specs (vLLM, Ollama, ...); several share the load."),
    click.option("--anthropic-base-url", metavar="URL", help="Base URL for anthropic: specs."),
    click.option("--run", "run_name", metavar="NAME", help="Name of the run; the same name resumes it (default: derived from the settings)."),
    click.option("--shard", metavar="K/N", help="Only shard K of N: personas K, K+N, K+2N... (default --db personagym.shard-K-of-N.db); join the shards with `personagym merge`."),
    db_option,
    click.option("--dry-run", is_flag=True, help="Print the planned calls and a token and cost estimate; call nothing."),
    click.option("--quiet", is_flag=True, help="No progress lines."),
]


def run_options(fn: Callable) -> Callable:
    for option in reversed(RUN_OPTIONS):
        fn = option(fn)
    return fn


def _merged(ctx: click.Context, flags: dict[str, Any]) -> dict[str, Any]:
    """Flags win; the config file fills what they leave unset."""
    config = {k.replace("-", "_"): v for k, v in ctx.obj["config"].items() if not isinstance(v, dict)}
    return {k: (v if v is not None and v is not False else config.get(k, v)) for k, v in flags.items()}


def _options(ctx: click.Context, o: dict[str, Any]):
    from personagym.llm import RetryPolicy, Sampling
    from personagym.llm.usage import PriceTable
    from personagym.pipeline import Options
    from personagym.pipeline.config import AGENT_SAMPLING

    def listed(value: Any) -> list[str] | None:
        if value is None:
            return None
        items = value if isinstance(value, list) else str(value).split(",")
        return [str(i).strip() for i in items if str(i).strip()]

    fields: dict[str, Any] = {}
    for name in ("generator", "example_model", "agent_base_url", "persona_field", "catalog"):
        if o.get(name):
            fields[name] = o[name]
    for name in ("questions_per_task", "max_environments", "judge_batch", "concurrency", "rpm", "tpm"):
        if o.get(name) is not None:
            fields[name] = o[name]
    if o.get("judges"):
        fields["judges"] = listed(o["judges"])
    if o.get("tasks"):
        fields["tasks"] = ",".join(listed(o["tasks"]) or [])
    if o.get("agent_template"):
        path = Path(o["agent_template"])
        if not path.is_file():
            raise UserError(f"agent template {path} does not exist: give a text file containing {{persona}}")
        fields["agent_template"] = path.read_text()
    fields["agent_sampling"] = Sampling(
        temperature=o["agent_temperature"] if o.get("agent_temperature") is not None else AGENT_SAMPLING.temperature,
        top_p=o["agent_top_p"] if o.get("agent_top_p") is not None else AGENT_SAMPLING.top_p,
        max_tokens=o["agent_max_tokens"] or AGENT_SAMPLING.max_tokens,
    )
    fields["settings"] = settings_from(ctx.obj["config"], o.get("openai_base_url"), o.get("anthropic_base_url"))
    fields["prices"] = PriceTable.load(o.get("prices"))
    if o.get("max_attempts") is not None and o["max_attempts"] < 1:
        raise UserError("--max-attempts must be at least 1")
    if o.get("timeout") is not None and o["timeout"] <= 0:
        raise UserError("--timeout must be a positive number of seconds")
    fields["retry"] = RetryPolicy(
        max_attempts=o.get("max_attempts") or RetryPolicy.max_attempts,
        timeout=o.get("timeout") or RetryPolicy.timeout,
    )
    fields["progress"] = not o.get("quiet")
    if o.get("batch"):
        fields["batch"] = True
    if o.get("batch_poll") is not None:
        if o["batch_poll"] <= 0:
            raise UserError("--batch-poll must be a positive number of seconds")
        fields["batch_poll"] = o["batch_poll"]
    if o.get("shard"):
        fields["shard"] = str(o["shard"])
    return Options(**fields)


def _go(ctx: click.Context, o: dict[str, Any], personas: list[str] | None, benchmark=None) -> None:
    from personagym.cli.merge import shard_line
    from personagym.pipeline import execute, prepare
    from personagym.pipeline.plan import plan_lines
    from personagym.store.merge import shard_db
    from personagym.summary import summary_lines

    if o.get("models"):
        for role in ("agent", "judges", "generator", "example_model"):
            o[role] = o.get(role) or o["models"]
    if not o.get("agent"):
        raise UserError("no agent to evaluate: pass --agent SPEC (e.g. --agent openai:gpt-4o-mini, or local)")
    options = _options(ctx, o)
    prepared = prepare(personas, o["agent"], options, benchmark, o.get("run_name"))
    db = db_path(ctx, o.get("db") or (shard_db(*prepared.shard) if prepared.shard else None))
    if o.get("dry_run"):
        for line in ([shard_line(prepared, db)] if prepared.shard else []) + plan_lines(prepared, options.prices):
            click.echo(line)
        return
    results = asyncio.run(execute(prepared, db, options))
    for line in summary_lines(results) + ([shard_line(prepared, db)] if prepared.shard else []):
        click.echo(line)
    if results["failures"]["total"]:
        sys.exit(1)


@cli.command("run")
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


@cli.group("benchmark", invoke_without_command=True)
@click.option("--benchmark-dir", metavar="DIR", help="A benchmark-v1 directory in the upstream layout (default: the downloaded copy).")
@click.option("--limit", type=int, metavar="N", help="Only the first N personas.")
@run_options
@click.pass_context
def benchmark_command(ctx: click.Context, benchmark_dir: str | None, limit: int | None, **flags: Any) -> None:
    """Run benchmark-v1: 200 personas x 5 tasks x 10 fixed questions, comparable with the paper.

    \b
    Examples:
      personagym benchmark download
      personagym benchmark --agent openai:gpt-4o-mini --limit 10 --dry-run
      personagym benchmark --agent openai:gpt-4o-mini --judges openai:gpt-4o --run mini-bench
    """
    if ctx.invoked_subcommand is not None:
        return
    from personagym.benchmark import default_benchmark_dir, load_benchmark

    o = _merged(ctx, flags)
    if limit is not None and limit < 1:
        raise UserError("--limit must be at least 1")
    bench = load_benchmark(benchmark_dir or ctx.obj["config"].get("benchmark_dir") or default_benchmark_dir())
    _go(ctx, o, None, bench.limit(limit))


@benchmark_command.command("download")
@click.option("--to", "dest", metavar="DIR", help="Where to put it (default: the user cache).")
@click.option("--from", "source", metavar="URL", help="A mirror with upstream's layout (default: GitHub at the pinned commit).")
def benchmark_download(dest: str | None, source: str | None) -> None:
    """Download benchmark-v1 from upstream at the pinned commit, verifying every file's sha256.

    \b
    Examples:
      personagym benchmark download
      personagym benchmark download --to ./benchmark-v1
    """
    from personagym.benchmark import UPSTREAM_RAW, download_benchmark

    def progress(done: int, total: int) -> None:
        if done == total or done % 20 == 0:
            click.echo(f"{done}/{total} files", err=True)

    path = download_benchmark(dest, base_url=source or UPSTREAM_RAW, progress=progress)
    click.echo(f"benchmark-v1 is in {path}")
