"""Persona input: cleaning one description, and reading the four file formats."""

from __future__ import annotations

import json

import pytest

from personagym.errors import UserError
from personagym.personas import MAX_PERSONA_CHARS, clean_persona, load_personas


def error_of(func, *args) -> str:
    with pytest.raises(UserError) as info:
        func(*args)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    assert ": " in message  # the problem, then the fix
    return message


def write(tmp_path, name: str, content: str | bytes) -> object:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


# -- clean_persona -----------------------------------------------------------------------------------


def test_clean_strips_and_collapses_whitespace():
    assert clean_persona("  A 72-year-old\tdoctor \n from   Tokyo  ") == "A 72-year-old doctor from Tokyo"


def test_clean_blank_names_where_and_gives_an_example():
    message = error_of(clean_persona, " \t\n ", "--persona")
    assert message == (
        "--persona is blank: give a description such as 'A 72-year-old doctor from Tokyo who loves hiking'"
    )


def test_clean_too_long():
    assert clean_persona("x" * MAX_PERSONA_CHARS) == "x" * MAX_PERSONA_CHARS
    message = error_of(clean_persona, "x" * (MAX_PERSONA_CHARS + 1))
    assert "persona" in message and str(MAX_PERSONA_CHARS) in message and "shorten" in message


# -- formats -----------------------------------------------------------------------------------------


def test_txt(tmp_path):
    path = write(tmp_path, "p.txt", "# my personas\nA doctor\n\n   \n  A  nurse \r\n#A comment\nA pilot")
    assert load_personas(path) == ["A doctor", "A nurse", "A pilot"]
    assert load_personas(str(path)) == ["A doctor", "A nurse", "A pilot"]


def test_txt_with_bom_and_unicode(tmp_path):
    path = write(tmp_path, "p.txt", "\ufeffUne infirmière de Montréal\n東京の医者\n".encode("utf-8"))
    assert load_personas(path) == ["Une infirmière de Montréal", "東京の医者"]


def test_json_strings_and_objects(tmp_path):
    assert load_personas(write(tmp_path, "a.json", json.dumps(["A doctor", " A  nurse "]))) == ["A doctor", "A nurse"]
    objects = [{"persona": "A doctor", "id": 1}, {"persona": "A nurse", "note": "x"}]
    assert load_personas(write(tmp_path, "b.json", json.dumps(objects))) == ["A doctor", "A nurse"]


def test_json_with_bom(tmp_path):
    path = write(tmp_path, "a.json", b"\xef\xbb\xbf" + json.dumps(["A doctor"]).encode())
    assert load_personas(path) == ["A doctor"]


def test_jsonl(tmp_path):
    lines = [json.dumps({"persona": "A doctor", "x": 1}), "", json.dumps({"persona": "A nurse\u2028from Oslo"})]
    path = write(tmp_path, "p.jsonl", "\n".join(lines) + "\n")
    assert load_personas(path) == ["A doctor", "A nurse from Oslo"]


def test_csv_extra_columns_and_quoted_commas(tmp_path):
    content = (
        'id,Persona,notes\r\n'
        '1,"A doctor from Tokyo, who loves hiking",first\r\n'
        '2,A nurse,"has, commas"\r\n'
        ',,\r\n'
        '3,"A pilot ""Ace"" from\nOslo",multi-line\r\n'
    )
    assert load_personas(write(tmp_path, "p.csv", content)) == [
        "A doctor from Tokyo, who loves hiking",
        "A nurse",
        'A pilot "Ace" from Oslo',
    ]


def test_csv_with_bom(tmp_path):
    path = write(tmp_path, "p.csv", "\ufeffpersona,age\nA doctor,72\n".encode())
    assert load_personas(path) == ["A doctor"]


def test_extension_is_case_insensitive(tmp_path):
    assert load_personas(write(tmp_path, "P.TXT", "A doctor\n")) == ["A doctor"]


def test_duplicates_removed_keeping_first(tmp_path):
    path = write(tmp_path, "p.txt", "A doctor\nA nurse\nA  doctor\nA pilot\nA nurse\na doctor\n")
    assert load_personas(path) == ["A doctor", "A nurse", "A pilot", "a doctor"]


# -- errors ------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    message = error_of(load_personas, tmp_path / "nope.txt")
    assert "nope.txt" in message and "does not exist" in message and "check the path" in message


def test_directory_is_not_a_file(tmp_path):
    (tmp_path / "dir.txt").mkdir()
    assert "is not a file" in error_of(load_personas, tmp_path / "dir.txt")


@pytest.mark.parametrize("name", ["p.txt", "p.json", "p.jsonl", "p.csv"])
def test_empty_file(tmp_path, name):
    message = error_of(load_personas, write(tmp_path, name, ""))
    assert name in message and "no personas" in message


@pytest.mark.parametrize(
    "name, content",
    [("p.txt", "# only a comment\n\n"), ("p.json", "[]"), ("p.jsonl", "\n\n"), ("p.csv", "persona,age\n")],
)
def test_file_without_personas(tmp_path, name, content):
    message = error_of(load_personas, write(tmp_path, name, content))
    assert name in message and "no personas" in message


def test_unknown_extension_lists_supported(tmp_path):
    message = error_of(load_personas, write(tmp_path, "p.yaml", "- A doctor\n"))
    assert "p.yaml" in message and "'.yaml'" in message
    for ext in (".txt", ".json", ".jsonl", ".csv"):
        assert ext in message
    assert "no extension" in error_of(load_personas, write(tmp_path, "personas", "A doctor\n"))


def test_invalid_json_names_the_line(tmp_path):
    message = error_of(load_personas, write(tmp_path, "p.json", '[\n  "A doctor",\n  "A nurse"\n  "A pilot"\n]'))
    assert "p.json" in message and "not valid JSON" in message and "line 4" in message


def test_json_not_a_list(tmp_path):
    message = error_of(load_personas, write(tmp_path, "p.json", '{"persona": "A doctor"}'))
    assert "p.json" in message and "not a list" in message


def test_json_item_errors_name_the_index(tmp_path):
    message = error_of(load_personas, write(tmp_path, "a.json", json.dumps(["A doctor", {"name": "x"}])))
    assert "a.json item 1" in message and '"persona"' in message and "name" in message
    message = error_of(load_personas, write(tmp_path, "b.json", json.dumps(["A doctor", 7])))
    assert "b.json item 1" in message and "number" in message
    message = error_of(load_personas, write(tmp_path, "c.json", json.dumps(["A doctor", {"persona": "  "}])))
    assert "c.json item 1" in message and "blank" in message


def test_jsonl_line_not_an_object(tmp_path):
    content = json.dumps({"persona": "A doctor"}) + "\n\n" + json.dumps(["A nurse"]) + "\n"
    message = error_of(load_personas, write(tmp_path, "p.jsonl", content))
    assert "p.jsonl line 3" in message and "not an object" in message


def test_jsonl_line_without_persona(tmp_path):
    content = json.dumps({"persona": "A doctor"}) + "\n" + json.dumps({"name": "A nurse"}) + "\n"
    message = error_of(load_personas, write(tmp_path, "p.jsonl", content))
    assert "p.jsonl line 2" in message and 'no "persona" field' in message and "name" in message


def test_jsonl_invalid_json_names_the_line(tmp_path):
    content = json.dumps({"persona": "A doctor"}) + "\n{persona: nope}\n"
    message = error_of(load_personas, write(tmp_path, "p.jsonl", content))
    assert "p.jsonl" in message and "not valid JSON" in message and "line 2" in message


def test_csv_without_persona_column_lists_columns(tmp_path):
    message = error_of(load_personas, write(tmp_path, "p.csv", "name,description\nBob,A doctor\n"))
    assert "p.csv" in message and "'persona' column" in message
    assert "'name'" in message and "'description'" in message


def test_csv_blank_persona_names_the_line(tmp_path):
    content = 'persona,age\n"A doctor, retired",72\n   ,40\n'
    message = error_of(load_personas, write(tmp_path, "p.csv", content))
    assert "p.csv line 3" in message and "blank persona" in message


def test_blank_after_cleaning_in_txt_is_skipped_but_too_long_names_the_line(tmp_path):
    path = write(tmp_path, "p.txt", "A doctor\n" + "x" * (MAX_PERSONA_CHARS + 1) + "\n")
    message = error_of(load_personas, path)
    assert "p.txt line 2" in message and "shorten" in message


def test_not_utf8(tmp_path):
    message = error_of(load_personas, write(tmp_path, "p.txt", "Une infirmière\n".encode("latin-1")))
    assert "p.txt" in message and "UTF-8" in message
