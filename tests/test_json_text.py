"""The scanner that reads JSON as models write it: values, slips, cut text, and chunking."""

from __future__ import annotations

import json

import pytest

from orchestra_nb._json_text import JSONScanner, LimitExceeded, loads, scan_text


def values(text: str) -> list:
    return [v.value for v in scan_text(text).values]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1, "b": [1.5, -2e3, true, null]}', [{"a": 1, "b": [1.5, -2000.0, True, None]}]),
        ("Sure! ```json\n{'a': 'it\\'s', 'b': [1,],}\n``` Done.", [{"a": "it's", "b": [1]}]),
        ("{id: task_1, title: Write the report, ok: True, no: None}",
         [{"id": "task_1", "title": "Write the report", "ok": True, "no": None}]),
        ('{"d": "a "catchy" title", "e": "x"}', [{"d": 'a "catchy" title', "e": "x"}]),
        ('{"a": "line\none"\n "b": 2}', [{"a": "line\none", "b": 2}]),
        ('{"a": 1 // one\n, /* two */ "b": 2}', [{"a": 1, "b": 2}]),
        ('{"a": "\\u00e9\\d\\n"}', [{"a": "é\\d\n"}]),
        ('[{"id": "a"}, {"id": "b", {"id": "c"}]', [[{"id": "a"}, {"id": "b"}, {"id": "c"}]]),
        ('{"l": [{"id": "a"}}, {"id": "b"}]}', [{"l": [{"id": "a"}, {"id": "b"}]}]),
        ('{"a": }, {"b", "c": 1}', [{"a": None}, {"b": None, "c": 1}]),
        ("see [1] and {x}", [[1], {"x": None}]),
    ],
)  # fmt: skip
def test_what_models_write_is_read(text, expected):
    assert values(text) == expected


def test_strict_json_reads_as_the_standard_library_reads_it():
    doc = {"s": 'q"\\/\b\f\n\r\t\u2603', "n": [0, -0.5, 1e-3, 12345678901234567890], "o": {}}
    text = json.dumps(doc, indent=1)
    assert values(text) == [json.loads(text)]


def test_cut_text_is_reported_open_not_mended():
    scan = scan_text('{"tasks": [{"id": "a"}, {"id": "b", "x": "unfinished')
    assert scan.values == []
    assert scan.open == {"tasks": [{"id": "a"}, {"id": "b"}]}
    open_ids = scan.open_ids
    assert id(scan.open["tasks"][1]) in open_ids and id(scan.open["tasks"][0]) not in open_ids
    assert loads('{"tasks": [{"id": "a"}') is None


def test_stray_closers_are_recorded():
    scan = scan_text('{"id": "a"}, {"id": "b"}]}')
    assert [v.value for v in scan.values] == [{"id": "a"}, {"id": "b"}]
    assert scan.stray_closers == [24, 25]


TRICKY = [
    '{"a": "say "hi" now", "b": \'it\\\'s\', c: Write  the   report , d: [1 , 2], "e":"\\"x"}',
    '[{"id": "a"}, {"id": "b", {"id": "c"}] // done\n{"more": /* yes */ true}',
    '{"l": [{"id": "a"}}, {"id": "b"}]} trailing words [1] {x: y}',
    '{"q": "ends with a quote"    ,  "r": "sp"   }  ',
    '{"a": "x"\n\n  "b": "y"   \t\n}',
]


@pytest.mark.parametrize("text", TRICKY)
def test_any_chunking_reads_what_one_read_does(text):
    whole = scan_text(text)
    expected = ([v.value for v in whole.values], whole.open, whole.stray_closers)
    splits = [[i] for i in range(1, len(text))] + [list(range(1, len(text)))]
    for cuts in splits:
        scanner = JSONScanner()
        start = 0
        for end in [*cuts, len(text)]:
            scanner.feed(text[start:end])
            start = end
        scan = scanner.finish()
        assert ([v.value for v in scan.values], scan.open, scan.stray_closers) == expected, cuts


def test_each_value_is_reported_as_its_bracket_closes():
    closed = []
    scanner = JSONScanner(on_close=lambda path, value, parents: closed.append((path, value)))
    text = '{"tasks": [{"id": "a"}, {"id": "b"}]}'
    for char in text:
        scanner.feed(char)
        if char == "}" and len(closed) == 1:
            assert closed == [((0, "tasks", 0), {"id": "a"})]
    assert [path for path, _v in closed] == [(0, "tasks", 0), (0, "tasks", 1), (0, "tasks"), (0,)]


def test_limits():
    with pytest.raises(LimitExceeded, match=r"more than 64 levels deep \(the limit is MAX_DEPTH"):
        scan_text("[" * 65)
    assert values("[" * 64 + "]" * 64)
    scanner = JSONScanner(max_chars=10, what="the plan", setting="MAX_PLAN_CHARS")
    scanner.feed("x" * 10)
    with pytest.raises(LimitExceeded, match=r"the plan is 11 characters, more than the 10"):
        scanner.feed("y")
