"""--shard K/N and `personagym merge`: a run split over N databases and merged gives the results of
the unsharded run, and the unsharded command resumes the merged run without calling a model."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from tests.pipeline_fakes import expected_task_scores, kinds, preflights, responder

TASKS = ["Expected Action", "Toxicity Control"]
PERSONAS = [
    "A 72-year-old doctor from Tokyo who loves hiking",
    "A 19-year-old farmer from New York who is a fitness freak",
    "A retired ship captain from Norway",
]


def personagym(server, cwd, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    env["OPENAI_BASE_URL"] = server.base_url
    return subprocess.run(
        [sys.executable, "-m", "personagym", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def ok(server, cwd, *args: str) -> subprocess.CompletedProcess:
    result = personagym(server, cwd, *args)
    assert result.returncode == 0, result.stderr
    return result


def refused(server, cwd, *args: str) -> str:
    """Bad input: exit code 2 and one line of error, no traceback."""
    result = personagym(server, cwd, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def bench_args(benchmark_dir, *extra: str) -> list[str]:
    return [
        "benchmark", "--benchmark-dir", str(benchmark_dir), "--limit", "5", "--agent", "openai:agent-x",
        "--judges", "openai:judge-a,openai:judge-b", "--example-model", "openai:ex", "--questions-per-task", "2",
        "--tasks", "expected_action,toxicity_control", "--quiet", *extra,
    ]


def dynamic_args(*extra: str) -> list[str]:
    args = ["run", "--agent", "openai:agent-x", "--judges", "openai:judge-a,openai:judge-b", "--generator", "openai:gen",
            "--example-model", "openai:ex", "--questions-per-task", "2", "--tasks", "expected_action,toxicity_control",
            "--max-attempts", "1", "--quiet"]
    for persona in PERSONAS:
        args += ["--persona", persona]
    return args + list(extra)


def only_run(db) -> str:
    with sqlite3.connect(db) as conn:
        (name,) = [row[0] for row in conn.execute("SELECT name FROM runs")]
    return name


def export(server, cwd, db) -> dict:
    return json.loads(ok(server, cwd, "export", only_run(db), "--db", str(db)).stdout)


def comparable(data: dict) -> dict:
    """An export without what legitimately differs between two runs: when they ran, and in what
    order their failures happened."""
    data = json.loads(json.dumps(data))
    for key in ("created_at", "updated_at", "status"):
        del data["run"][key]
    data["failures"]["items"].sort(key=json.dumps)
    return data


@pytest.fixture
def scripted(server):
    server.responder = responder
    return server


def test_three_shards_merge_into_the_unsharded_run_and_resume_without_calls(scripted, tmp_path, shared_benchmark):
    whole, split = tmp_path / "whole", tmp_path / "split"
    whole.mkdir(), split.mkdir()
    ok(scripted, whole, *bench_args(shared_benchmark))
    unsharded = export(scripted, whole, whole / "personagym.db")
    unsharded_calls = scripted.stats.requests - preflights(scripted)

    scripted.reset_stats()
    for k in (1, 2, 3):
        out = ok(scripted, split, *bench_args(shared_benchmark, "--shard", f"{k}/3")).stdout
        assert f"shard {k}/3" in out and f"personagym.shard-{k}-of-3.db" in out
    # The split costs nothing extra but each shard's check that its models answer.
    assert scripted.stats.requests - preflights(scripted) == unsharded_calls
    shards = [f"personagym.shard-{k}-of-3.db" for k in (1, 2, 3)]
    # Persona i goes to shard (i mod 3) + 1: 5 personas split 2, 2, 1.
    listed = json.loads((shared_benchmark / "personas.json").read_text(encoding="utf-8"))[:5]
    for k, db in enumerate(shards, start=1):
        assert [p["persona"] for p in export(scripted, split, split / db)["personas"]] == listed[k - 1 :: 3]

    merged_out = ok(scripted, split, "merge", "merged.db", *reversed(shards)).stdout  # any order
    assert "merged 3 shards (5 personas)" in merged_out
    merged = export(scripted, split, split / "merged.db")

    assert comparable(merged) == comparable(unsharded)
    # Spelled out, what users rely on: the same run, scores, persona order, questions, verdicts, bill.
    assert merged["run"]["name"] == unsharded["run"]["name"] and merged["run"]["status"] == "done"
    assert "shard" not in merged["run"]["config"]
    assert merged["scores"]["tasks"] == pytest.approx(expected_task_scores(TASKS))
    assert merged["scores"]["questions"] == merged["scores"]["questions_scored"] == 5 * 2 * 2
    assert [p["persona"] for p in merged["personas"]] == listed
    assert [(q["persona"], q["task"], q["question"]) for q in merged["questions"]] == [
        (q["persona"], q["task"], q["question"]) for q in unsharded["questions"]
    ]
    assert [q["verdicts"] for q in merged["questions"]] == [q["verdicts"] for q in unsharded["questions"]]
    assert merged["failures"]["total"] == unsharded["failures"]["total"] == 0
    assert merged["usage"]["total"] == unsharded["usage"]["total"]

    # The unsharded command, pointed at the merged database, finds its run complete.
    scripted.reset_stats()
    again = ok(scripted, split, *bench_args(shared_benchmark, "--db", "merged.db"))
    assert scripted.stats.requests == preflights(scripted)  # only the check that its models answer
    assert unsharded["run"]["name"] in again.stdout
    assert comparable(export(scripted, split, split / "merged.db")) == comparable(unsharded)


def test_a_dynamic_run_with_failures_merges_and_its_failures_are_retried(scripted, tmp_path):
    def farmer_agent_down(api, body):
        if body["model"] == "agent-x" and "farmer" in json.dumps(body["messages"]):
            raise RuntimeError("agent down")
        return responder(api, body)

    scripted.responder = farmer_agent_down
    whole, split = tmp_path / "whole", tmp_path / "split"
    whole.mkdir(), split.mkdir()
    done = personagym(scripted, whole, *dynamic_args())
    assert done.returncode == 0 and "incomplete" in done.stdout  # failures, but a PersonaScore: labelled incomplete
    unsharded = export(scripted, whole, whole / "personagym.db")
    for k in (1, 2):
        personagym(scripted, split, *dynamic_args("--shard", f"{k}/2"))
    ok(scripted, split, "merge", "merged.db", "personagym.shard-1-of-2.db", "personagym.shard-2-of-2.db")
    merged = export(scripted, split, split / "merged.db")

    assert comparable(merged) == comparable(unsharded)
    assert merged["failures"]["total"] == 4 and merged["failures"]["by_stage"] == {"answers": 4}
    assert [p["environments"] for p in merged["personas"]] == [p["environments"] for p in unsharded["personas"]]
    assert [p["persona"] for p in merged["personas"]] == PERSONAS

    # Resuming the merged run retries only the failed answers (and grades them); nothing else is redone.
    scripted.responder = responder
    scripted.reset_stats()
    ok(scripted, split, *dynamic_args("--db", "merged.db"))
    assert kinds(scripted) == {"answer": 4, "Verdicts/judge-a": 2, "Verdicts/judge-b": 2}
    resumed = export(scripted, split, split / "merged.db")
    assert resumed["failures"]["total"] == 0 and resumed["scores"]["personas_scored"] == 3


def test_dry_run_shows_the_shards_share_and_writes_nothing(scripted, tmp_path, shared_benchmark):
    out = ok(scripted, tmp_path, *bench_args(shared_benchmark, "--shard", "2/3", "--dry-run")).stdout
    assert "shard 2/3: 2 persona(s), at positions 2, 5 of the whole list, in personagym.shard-2-of-3.db" in out
    assert "2 persona(s) x 2 task(s) x 2 question(s)" in out
    assert "total: 20 calls" in out  # 2 personas x 2 tasks x (2 answers + 1 example batch + 2 judges x 1 batch)
    assert scripted.stats.requests == 0 and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("shard", "complaint"), [("4/3", "out of range"), ("0/3", "out of range"), ("3", "not of the form K/N")]
)
def test_a_bad_shard_is_refused(scripted, tmp_path, shared_benchmark, shard, complaint):
    message = refused(scripted, tmp_path, *bench_args(shared_benchmark, "--shard", shard))
    assert complaint in message and "--shard K/N" in message
    assert not list(tmp_path.iterdir())


def test_bad_merges_are_refused_and_leave_the_output_untouched(scripted, tmp_path, shared_benchmark):
    for k in (1, 2, 3):
        ok(scripted, tmp_path, *bench_args(shared_benchmark, "--shard", f"{k}/3", "--run", "b"))
    one, two, three = (f"personagym.shard-{k}-of-3.db" for k in (1, 2, 3))
    # A shard run is not resumed as another shard.
    assert "different shard" in refused(scripted, tmp_path, *bench_args(shared_benchmark, "--shard", "2/3",
                                                                          "--run", "b", "--db", one))
    shutil.copy(tmp_path / one, tmp_path / "copy-of-1.db")
    ok(scripted, tmp_path, *bench_args(shared_benchmark, "--shard", "3/3", "--run", "b", "--db", "odd.db",
                                       "--judges", "openai:judge-a"))
    ok(scripted, tmp_path, *bench_args(shared_benchmark, "--run", "b", "--db", "taken.db", "--questions-per-task", "1"))
    taken = (tmp_path / "taken.db").read_bytes()

    cases = [
        ([one, two], "shard 3/3 missing"),
        ([one, "copy-of-1.db", two, three], "shard 1/3 is given twice"),
        ([one, two, "odd.db"], "different judges"),
        ([one, two, "nowhere.db"], "nowhere.db does not exist"),
        ([one, two, three, one], "given twice"),
    ]
    for inputs, complaint in cases:
        for out in ("new.db", "taken.db"):
            assert complaint in refused(scripted, tmp_path, "merge", out, *inputs)
    assert "different questions_per_task" in refused(scripted, tmp_path, "merge", "taken.db", one, two, three)
    assert "holds no shard run" in refused(scripted, tmp_path, "merge", "new.db", "taken.db")
    assert "both the output and a shard" in refused(scripted, tmp_path, "merge", one, one, two, three)
    assert not (tmp_path / "new.db").exists() and not (tmp_path / "nowhere.db").exists()
    assert (tmp_path / "taken.db").read_bytes() == taken
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind

    # The same shards, correctly given: the merged run keeps the name they were run under.
    ok(scripted, tmp_path, "merge", "new.db", one, two, three, "--run", "b")
    assert only_run(tmp_path / "new.db") == "b"


async def test_a_column_added_by_a_later_migration_is_merged_too(scripted, tmp_path, monkeypatch):
    from personagym.llm import ProviderSettings
    from personagym.pipeline import evaluate
    from personagym.pipeline.evaluate import run_name_for
    from personagym.pipeline.shard_set import read_shards
    from personagym.store import db as store_db
    from personagym.store.merge import write_merged

    settings = {"openai": ProviderSettings(base_url=scripted.base_url, api_key="k")}
    for k in (1, 2):
        await evaluate(
            PERSONAS[:2], agent="openai:agent-x", shard=f"{k}/2", db=tmp_path / f"s{k}.db", settings=settings,
            judges=["openai:judge-a"], generator="openai:gen", example_model="openai:ex", tasks="expected_action",
            questions_per_task=1, progress=False,
        )
    # A future schema: calls gain a column. The shards migrate when opened, and the rows they then
    # hold with it reach the merged database without merge knowing the column.
    number = store_db.SCHEMA_VERSION + 1
    later = (number, "a later column", "ALTER TABLE calls ADD COLUMN note TEXT")
    monkeypatch.setattr(store_db, "MIGRATIONS", [*store_db.MIGRATIONS, later])
    monkeypatch.setattr(store_db, "SCHEMA_VERSION", number)
    shards = [tmp_path / "s1.db", tmp_path / "s2.db"]
    whole = read_shards(shards, tmp_path / "out.db", None, run_name_for)
    for shard in whole.shards:
        shard.conn.execute("UPDATE calls SET note = ?", (f"from shard {shard.k}",))
    write_merged(tmp_path / "out.db", whole.to_merge())
    whole.close()
    with sqlite3.connect(tmp_path / "out.db") as out:
        notes = sorted({row[0] for row in out.execute("SELECT note FROM calls")})
        assert out.execute("PRAGMA user_version").fetchone()[0] == number
    assert notes == ["from shard 1", "from shard 2"]


def test_a_merge_is_only_as_finished_as_its_least_finished_shard(scripted, tmp_path, shared_benchmark):
    for k in (1, 2):
        ok(scripted, tmp_path, *bench_args(shared_benchmark, "--shard", f"{k}/2", "--limit", "2"))
    with sqlite3.connect(tmp_path / "personagym.shard-2-of-2.db") as conn:
        conn.execute("UPDATE runs SET status = 'interrupted'")  # as Ctrl-C leaves it
    result = ok(scripted, tmp_path, "merge", "out.db", "personagym.shard-1-of-2.db", "personagym.shard-2-of-2.db")
    assert "note: shard 2/2 (personagym.shard-2-of-2.db) is interrupted" in result.stderr
    assert export(scripted, tmp_path, tmp_path / "out.db")["run"]["status"] == "interrupted"
