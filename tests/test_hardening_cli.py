"""The CLI under misuse, as a user meets it (issue 11): two processes on one run, SIGTERM, broken and
read-only databases, a full disk, config files, export files and CSVs that are wrong, hostile text.
Each ends in the promised outcome: one writer, a resumable run, or one line with the fix and exit 2."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from personagym.cli.results import to_csv
from personagym.testing import FakeServer
from tests.conftest import assert_one_line_error, cli_argv, cli_env, run_cli
from tests.test_report import synthetic_results

PERSONA = "A 72-year-old doctor from Tokyo who loves hiking"
ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x9b"


def run_args(db: Path | str, *extra: str, run: str = "r") -> list[str]:
    return ["run", "--persona", PERSONA, "--models", "openai:m", "--tasks", "expected_action,linguistic_habits",
            "--questions-per-task", "3", "--run", run, "--quiet", "--db", str(db), *extra]


def env_for(server: FakeServer) -> dict[str, str]:
    return {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}


def start(args: list[str], server: FakeServer, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(cli_argv(*args), env=cli_env(env_for(server)), cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_requests(server: FakeServer, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while server.stats.requests < n and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.stats.requests >= n


def wait_for_lock(path: Path, timeout: float = 60) -> int:
    """The pid holding a run's lock in the database at `path`, once one does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            held = read_db(path, "SELECT pid FROM run_locks")
        except sqlite3.Error:
            held = []  # not created, or not migrated yet
        if held:
            return held[0][0]
        time.sleep(0.02)
    raise AssertionError(f"no process took the lock in {path}")


def read_db(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
def slow_server():
    with FakeServer(latency=1.0) as server:
        yield server


def requests_of_one_run(server: FakeServer, tmp_path: Path) -> int:
    """How many requests the run makes alone (same models, an empty database)."""
    latency, server.latency = server.latency, 0.0
    result = run_cli(*run_args(tmp_path / "alone.db"), env=env_for(server), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    count = server.stats.requests
    server.reset_stats()
    server.latency = latency
    return count


# --- one writer per run ----------------------------------------------------------------------------


def test_a_second_process_on_the_same_run_exits_2_and_pays_nothing(slow_server, tmp_path):
    alone = requests_of_one_run(slow_server, tmp_path)
    first = start(run_args(tmp_path / "p.db"), slow_server, tmp_path)
    try:
        assert wait_for_lock(tmp_path / "p.db") == first.pid
        slow_server.inject("stall", count=2, stall_seconds=10)  # the first holds the run while the second starts
        second = run_cli(*run_args(tmp_path / "p.db"), env=env_for(slow_server), cwd=tmp_path)
        assert_one_line_error(second, "run 'r' is being evaluated by another process", f"pid {first.pid}",
                              "this machine", "since", f"kill {first.pid}")
        out, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, err
    assert slow_server.stats.requests == alone  # not one request more than the run alone
    assert read_db(tmp_path / "p.db", "SELECT status FROM runs") == [("done",)]
    assert read_db(tmp_path / "p.db", "SELECT count(*) FROM run_locks") == [(0,)]


def test_a_run_killed_with_9_is_taken_over_and_finished(slow_server, tmp_path):
    first = start(run_args(tmp_path / "p.db"), slow_server, tmp_path)
    wait_for_lock(tmp_path / "p.db")
    wait_for_requests(slow_server, slow_server.stats.requests + 1)  # mid-run
    first.kill()
    first.wait()
    assert read_db(tmp_path / "p.db", "SELECT pid FROM run_locks") == [(first.pid,)]  # left behind
    slow_server.latency = 0.0
    again = run_cli(*run_args(tmp_path / "p.db"), env=env_for(slow_server), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert read_db(tmp_path / "p.db", "SELECT status FROM runs") == [("done",)]
    assert read_db(tmp_path / "p.db", "SELECT count(*) FROM run_locks") == [(0,)]


def test_sigterm_is_handled_like_ctrl_c(slow_server, tmp_path):
    first = start(run_args(tmp_path / "p.db"), slow_server, tmp_path)
    wait_for_lock(tmp_path / "p.db")
    wait_for_requests(slow_server, slow_server.stats.requests + 1)  # mid-run
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 143 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "interrupted (SIGTERM)"
    assert read_db(tmp_path / "p.db", "SELECT status FROM runs") == [("interrupted",)]
    assert read_db(tmp_path / "p.db", "SELECT count(*) FROM run_locks") == [(0,)]  # released
    slow_server.latency = 0.0
    again = run_cli(*run_args(tmp_path / "p.db"), env=env_for(slow_server), cwd=tmp_path)
    assert again.returncode == 0 and "(done)" in again.stdout, again.stderr


# --- database files: broken, special, missing, read-only, on a full disk ---------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A database holding one finished run."""
    folder = tmp_path_factory.mktemp("finished")
    with FakeServer() as server:
        result = run_cli(*run_args(folder / "done.db", "--tasks", "expected_action", "--questions-per-task", "2"),
                         env=env_for(server), cwd=folder)
    assert result.returncode == 0, result.stderr
    conn = sqlite3.connect(folder / "done.db")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return folder / "done.db"


@pytest.fixture
def here(capsys, monkeypatch):
    """`personagym ARGS` in this process (fast, for many cases): (exit code, stdout, stderr)."""
    from personagym.cli import main

    monkeypatch.delenv("PERSONAGYM_CONFIG", raising=False)

    def call(*args: str, cwd: Path) -> tuple[int, str, str]:
        monkeypatch.chdir(cwd)
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        out, err = capsys.readouterr()
        return code, out, err

    return call


@pytest.mark.parametrize("kind", ["zero-filled", "header only", "truncated", "fifo", "/dev/null", "folder", "garbage"])
def test_every_command_refuses_a_broken_database_in_one_line(finished, tmp_path, here, kind):
    good = finished.read_bytes()
    path = tmp_path / "broken.db"
    if kind == "fifo":
        os.mkfifo(path)  # reading its header would wait forever for a writer
    elif kind == "/dev/null":
        path = Path("/dev/null")
    elif kind == "folder":
        path = tmp_path
    elif kind == "garbage":  # a sound header over pages SQLite cannot read
        path.write_bytes(good[:100] + os.urandom(len(good) - 100))
    else:
        path.write_bytes({"zero-filled": bytes(len(good)), "header only": good[:100],
                          "truncated": good[: len(good) // 2]}[kind])
    before = sorted(os.listdir(tmp_path))
    for args in (["runs"], ["show", "r"], ["export", "r"], ["cache", "stats"], ["cache", "clear"],
                 ["report", "r", "-o", str(tmp_path / "x.html")]):
        code, _out, err = here(*args, "--db", str(path), cwd=tmp_path)
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), (args, err)
        assert "Traceback" not in err and (str(path) in err or kind == "garbage"), err
    assert sorted(os.listdir(tmp_path)) == before
    assert not Path("/dev/null").is_file()


def test_a_table_sqlite_cannot_read_stops_a_reader_in_one_line(finished, tmp_path, here):
    good = bytearray(finished.read_bytes())
    good[4096:] = os.urandom(len(good) - 4096)  # the schema reads, the tables do not
    (tmp_path / "bad.db").write_bytes(bytes(good))
    code, _out, err = here("runs", "--db", "bad.db", cwd=tmp_path)
    assert code == 2 and err.startswith("error: ") and "damaged" in err and len(err.splitlines()) == 1, err


def test_read_commands_never_create_a_database(tmp_path):
    for args in (["cache", "stats"], ["cache", "clear"], ["runs"], ["show", "r"], ["export", "r"]):
        assert_one_line_error(run_cli(*args, "--db", "typo.db", cwd=tmp_path), "no database at typo.db")
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_shard_or_output_names_merges_own_arguments(finished, tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(bytes(4096))
    line = assert_one_line_error(run_cli("merge", "out.db", str(bad), cwd=tmp_path), str(bad))
    assert "--db" not in line and "--shard" in line
    from personagym.errors import UserError
    from personagym.store.db import connect
    from personagym.store.merge import OUT_FIX

    out = tmp_path / "out.db"
    out.write_bytes(finished.read_bytes()[:100])
    with pytest.raises(UserError, match=r"merge output .* is damaged .*another OUT\.db") as refused:
        connect(out, create=False, label="merge output", fix=OUT_FIX)  # as write_merged opens it
    assert "--db" not in str(refused.value)


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(not _unshare_works(), reason="needs `unshare -rm` to mount a tmpfs")


def py(*args: object) -> str:
    """A personagym command line for the shell."""
    return shlex.join([sys.executable, "-m", "personagym", *map(str, args)])


def in_mount_namespace(script: str, tmp_path: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """Run a shell script in a private mount namespace, where it may mount a tmpfs, and return what
    it recorded: `run CMD; mark NAME` keeps CMD's exit code as NAME and its output as NAME.out, NAME.err."""
    record = tmp_path / "record"
    record.mkdir()
    prelude = (
        f"R={shlex.quote(str(record))}\n"
        'run() { rc=0; "$@" > $R/last.out 2> $R/last.err || rc=$?; }\n'
        "mark() { echo $rc > $R/$1.rc; cp $R/last.out $R/$1.out; cp $R/last.err $R/$1.err; }\n"
    )
    result = subprocess.run(["unshare", "-rm", "sh", "-ec", prelude + script], capture_output=True, text=True,
                            env=cli_env(env), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    marks = {}
    for rc in record.glob("*.rc"):
        marks[rc.stem] = rc.read_text().strip()
        for stream in ("out", "err"):
            marks[f"{rc.stem}.{stream}"] = (record / f"{rc.stem}.{stream}").read_text()
    return marks


def one_line(marks: dict[str, str], name: str, *words: str) -> str:
    assert marks[name] == "2", (marks[name], marks[name + ".err"])
    lines = marks[name + ".err"].strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in marks[name + ".err"], marks[name + ".err"]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@needs_mounts
def test_a_database_on_a_read_only_disk_reads_and_refuses_writers(finished, tmp_path):
    m = tmp_path / "mnt"
    m.mkdir()
    db = m / "p.db"
    marks = in_mount_namespace(
        f"mount -t tmpfs tmpfs {m}; cp {finished} {db}; mount -o remount,ro {m}\n"
        f"run {py('runs', '--db', db)}; mark runs\n"
        f"run {py('show', 'r', '--db', db)}; mark show\n"
        f"run {py('export', 'r', '--db', db, '-o', tmp_path / 'out.json')}; mark export\n"
        f"run {py('report', 'r', '--db', db, '-o', tmp_path / 'report.html')}; mark report\n"
        f"run {py('cache', 'stats', '--db', db)}; mark stats\n"
        f"run {py('cache', 'clear', '--db', db)}; mark clear\n"
        f"run {py(*run_args(db))}; mark run\n"
        f"ls -A {m} > $R/listing\n",
        tmp_path,
        env={"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
    )
    for name in ("runs", "show", "export", "report", "stats"):
        assert marks[name] == "0", (name, marks[name + ".err"])
    assert "r " in marks["runs.out"] and "PersonaScore" in marks["show.out"]
    assert json.loads((tmp_path / "out.json").read_text())["run"]["name"] == "r"
    one_line(marks, "clear", "read-only")
    one_line(marks, "run", "read-only")  # before any model is called (none answers at that URL)
    assert (tmp_path / "record" / "listing").read_text().split() == ["p.db"]  # nothing written beside it


@needs_mounts
@pytest.mark.parametrize("room", [60_000, 300_000], ids=["while-opening", "mid-run"])
def test_a_full_disk_stops_a_run_in_one_line_and_it_resumes(tmp_path, room):
    fill = (
        "import os, sys; d = sys.argv[1]; s = os.statvfs(d); free = s.f_bavail * s.f_frsize\n"
        'open(os.path.join(d, "filler"), "wb").write(bytes(max(0, free - int(sys.argv[2]))))\n'
    )
    (tmp_path / "fill.py").write_text(fill)
    fill_to = f"{sys.executable} {tmp_path / 'fill.py'}"
    m = tmp_path / "mnt"
    m.mkdir()
    db, copy = m / "p.db", tmp_path / "copy.db"
    create = shlex.join([sys.executable, "-c", f"from personagym.store import connect; connect({str(db)!r}).close()"])

    def replies(api: str, body: dict):  # long answers, so a few of them fill the disk
        structured = body.get("response_format") or body.get("tools") or "JSON" in json.dumps(body)[:4000]
        return None if structured else "A long answer in character. " * 400

    with FakeServer(responder=replies) as server:
        marks = in_mount_namespace(
            f"mount -t tmpfs -o size=2m tmpfs {m}\n"
            f"{create}\n"
            f"{fill_to} {m} {room}\n"
            f"run {py(*run_args(db))}; mark full\n"
            f"rm {m / 'filler'}\n"
            f"run {py(*run_args(db))}; mark resumed\n"
            f"cp {db} {copy}\n"
            f"{fill_to} {m} 2000\n"
            f"run {py('export', 'r', '--db', copy, '-o', m / 'again.json')}; mark export_full\n"
            f"ls -A {m} > $R/after-export\n",
            tmp_path,
            env=env_for(server),
        )
    one_line(marks, "full", "disk is full", "run the same command again")
    assert marks["resumed.err"] == "" or "Traceback" not in marks["resumed.err"]
    assert marks["resumed"] == "0", marks["resumed.err"]
    assert "(done)" in marks["resumed.out"]
    one_line(marks, "export_full", "again.json", "No space left", "free some space")
    listing = (tmp_path / "record" / "after-export").read_text().split()
    assert not [name for name in listing if name.endswith(".part") or "again" in name], listing


def test_a_non_finite_number_in_a_run_is_never_exported(finished, tmp_path):
    path = tmp_path / "nan.db"
    shutil.copy(finished, path)
    conn = sqlite3.connect(path)
    config = json.loads(conn.execute("SELECT config FROM runs").fetchone()[0])
    config["sampling"]["agent"]["temperature"] = float("nan")  # as `--agent-temperature nan` was once stored
    conn.execute("UPDATE runs SET config = ?", (json.dumps(config),))
    conn.commit()
    conn.close()
    assert_one_line_error(run_cli("export", "r", "--db", str(path), "-o", "out.json", cwd=tmp_path), "not finite")
    assert not (tmp_path / "out.json").exists()


# --- config files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "toml, words",
    [
        ('judge = "openai:x"', ["unknown key `judge`", "did you mean `judges`?"]),
        ('concurrency = "lots"', ["`concurrency` is a string ('lots')", "whole number"]),
        ("concurrency = 2.5", ["`concurrency`", "whole number"]),
        ('dry_run = "false"', ["`dry_run` is a string", "true or false"]),
        ("agent_temperature = nan", ["`agent_temperature`", "finite"]),
        ('structured_output = "xml"', ["`structured_output`", "json_schema"]),
        ('[openai]\ntimeout = "slow"', ["`openai.timeout` is a string", "a number"]),
        ('[openai]\nbaseurl = "http://x/v1"', ["unknown key `openai.baseurl`", "did you mean `openai.base_url`?"]),
        ("[anthropic]\napi_key = 5", ["`anthropic.api_key` is a whole number"]),
        ('openai = "x"', ["`openai` must be a table"]),
    ],
)
def test_a_config_file_is_checked_whole_before_anything_runs(tmp_path, here, monkeypatch, toml, words):
    (tmp_path / "personagym.toml").write_text(toml + "\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    code, _out, err = here("run", "--persona", PERSONA, "--agent", "openai:m", "--db", "new.db", cwd=tmp_path)
    assert code == 2 and len(err.splitlines()) == 1 and "config file personagym.toml" in err, err
    assert all(word in err for word in words), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["personagym.toml"]


def test_a_good_config_file_may_spell_keys_as_flags_and_lists(tmp_path):
    (tmp_path / "personagym.toml").write_text(
        'run = "from-config"\nenvironments = 2\njudges = ["openai:j1", "openai:j2"]\nquestions-per-task = 1\n'
        'agent_temperature = 1\ndry_run = true\n[openai]\nbase_url = ["http://a/v1", "http://b/v1"]\ntimeout = 30\n'
    )
    result = run_cli("run", "--persona", PERSONA, "--agent", "openai:m", cwd=tmp_path, env={"OPENAI_API_KEY": "k"})
    assert result.returncode == 0, result.stderr
    assert "dry run of 'from-config'" in result.stdout and "openai:j2" in result.stdout


# --- export files read back ------------------------------------------------------------------------


def _broken_exports() -> list[tuple[str, object, str]]:
    def drop(path):
        def edit(data):
            *head, last = path
            target = data
            for key in head:
                target = target[key]
            del target[last]
        return edit

    def put(path, value):
        def edit(data):
            *head, last = path
            target = data
            for key in head:
                target = target[key]
            target[last] = value
        return edit

    return [
        ("missing verdicts", drop(["questions", 0, "verdicts"]), "field questions[0].verdicts is missing"),
        ("task score as text", put(["scores", "tasks", "Expected Action"], "high"),
         'field scores.tasks["Expected Action"] is a string, not a number'),
        ("judges as text", put(["run", "config", "judges"], "openai:j"), "field run.config.judges is a string"),
        ("index as a boolean", put(["questions", 1, "index"], True), "field questions[1].index is a boolean"),
        ("no personas", drop(["personas"]), "field personas is missing"),
        ("failure item without detail", put(["failures", "items"], [{"stage": "answers"}]),
         "field failures.items[0].persona is missing"),
    ]


@pytest.mark.parametrize("case", _broken_exports(), ids=lambda c: c[0])
def test_report_compare_and_alignment_name_the_bad_field_of_an_export(tmp_path, here, case):
    _name, edit, words = case
    good = synthetic_results("good")
    bad = copy.deepcopy(good)
    edit(bad)
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    (tmp_path / "ratings.csv").write_text("persona,task,score\nPersona 0,expected_action,3\n")
    for args in (["report", "bad.json", "-o", "r.html"], ["compare", "good.json", "bad.json"],
                 ["alignment", "bad.json", "--human", "ratings.csv"]):
        code, _out, err = here(*args, cwd=tmp_path)
        assert code == 2 and len(err.splitlines()) == 1 and "bad.json" in err and words in err, (args, err)
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_an_export_holding_a_non_finite_number_is_refused(tmp_path, here, number):
    text = json.dumps(synthetic_results("nan")).replace('"persona_score": ', f'"persona_score": {number}, "x": ', 1)
    (tmp_path / "nan.json").write_text(text)
    code, _out, err = here("report", "nan.json", "-o", "r.html", cwd=tmp_path)
    assert code == 2 and len(err.splitlines()) == 1 and "nan.json is not readable JSON" in err, err


def test_an_alignment_csv_with_a_huge_cell_is_one_line(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps(synthetic_results("run")))
    (tmp_path / "ratings.csv").write_text("persona,task,score\n" + '"' + "x" * 300_000 + '",expected_action,3\n')
    assert_one_line_error(run_cli("alignment", "run.json", "--human", "ratings.csv", cwd=tmp_path),
                          "ratings.csv line", "cannot be read as CSV")


# --- writes ----------------------------------------------------------------------------------------


def test_export_to_a_folder_is_one_line_and_leaves_nothing(finished, tmp_path):
    (tmp_path / "out").mkdir()
    assert_one_line_error(run_cli("export", "r", "--db", str(finished), "-o", "out", cwd=tmp_path), "folder")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and not list((tmp_path / "out").iterdir())


def test_export_into_a_pipe_writes_into_it(finished, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    result = run_cli("export", "r", "--db", str(finished), "-o", str(fifo), cwd=tmp_path)
    reader.join(30)
    assert result.returncode == 0, result.stderr
    assert json.loads(got[0])["run"]["name"] == "r"
    assert stat.S_ISFIFO(fifo.stat().st_mode) and [p.name for p in tmp_path.iterdir()] == ["pipe"]


def test_csv_cells_that_a_spreadsheet_would_run_are_escaped():
    results = synthetic_results("=cmd|' /C calc'!A0", personas=1, questions=1,
                                persona_text="=HYPERLINK(\"http://evil.example\",\"x\")", answer="+1+2")
    results["questions"][1]["answer"] = "-2-1"
    results["questions"][2]["answer"] = "@SUM(A1)"
    results["questions"][3]["answer"] = "\t=1"
    results["questions"][4]["answer"] = "An answer - with a dash = fine"
    import csv
    import io

    rows = list(csv.reader(io.StringIO(to_csv(results))))[1:]
    assert {row[0] for row in rows} == {"'=cmd|' /C calc'!A0"}
    assert {row[1] for row in rows} == {"'=HYPERLINK(\"http://evil.example\",\"x\")"}
    assert [row[5] for row in rows] == ["'+1+2", "'-2-1", "'@SUM(A1)", "'\t=1", "An answer - with a dash = fine"]


# --- text printed to the terminal ----------------------------------------------------------------


def test_control_characters_in_names_never_reach_the_terminal(finished, tmp_path):
    a, b = synthetic_results("a" + ESCAPES), synthetic_results("b" + ESCAPES, seed=1)
    a["personas"][0]["persona"] += ESCAPES
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    compared = run_cli("compare", "a.json", "b.json", cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    path = tmp_path / "evil.db"
    shutil.copy(finished, path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE runs SET name = ?", ("evil" + ESCAPES,))
    conn.execute("UPDATE personas SET text = text || ?", (ESCAPES,))
    conn.commit()
    conn.close()
    listed = run_cli("runs", "--db", str(path), cwd=tmp_path)
    shown = run_cli("show", "evil" + ESCAPES, "--db", str(path), cwd=tmp_path)
    missing = run_cli("show", "nope", "--db", str(path), cwd=tmp_path)
    for result in (compared, listed, shown, missing):
        printed = result.stdout + result.stderr
        assert "evil" in printed or "a" in printed
        assert not any(c in printed for c in "\x1b\x07\x9b"), printed


def test_the_printable_helper():
    from personagym.summary import printable

    assert printable("a\x1b]0;x\x07b\tc\nd\u202ee\x00") == "a]0;xb c de"
    assert printable("Zoë 🙂 — ok") == "Zoë 🙂 — ok"


# --- flag names in messages ------------------------------------------------------------------------


def test_messages_name_the_flags_the_command_has(tmp_path):
    assert_one_line_error(run_cli("benchmark", "download", "--to", str(tmp_path / "b"), "--from", "ftp://x",
                                  cwd=tmp_path), "--from 'ftp://x'")
    assert_one_line_error(run_cli("run", "--persona", PERSONA, "--agent", "openai:m", "--agent-template",
                                  str(tmp_path), "--dry-run", cwd=tmp_path, env={"OPENAI_API_KEY": "k"}),
                          f"--agent-template {tmp_path} is a folder")


def test_the_reliability_doc_names_only_tests_that_exist():
    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "reliability.md").read_text()
    named = re.findall(r"`(test_\w+\.py)::(test_\w+)`", doc)
    assert len(named) > 30
    for module, test in named:
        assert f"def {test}(" in (root / "tests" / module).read_text(), f"{module}::{test}"
