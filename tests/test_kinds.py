"""The one definition of task kinds and statuses reaches every layer that uses them."""

from orchestra_nb._events import STATUS_AFTER
from orchestra_nb._kinds import FINAL_STATUSES, KIND_SYNONYMS, KINDS, STATUSES, vocabulary
from orchestra_nb._render import KIND_SHAPE, STATUS_STYLE
from orchestra_nb._text import first_line, shorten
from orchestra_nb.jupyter._widget import DagWidget


def test_every_status_and_kind_can_be_drawn():
    assert set(STATUS_STYLE) == set(STATUSES)
    assert set(KIND_SHAPE) == set(KINDS)


def test_events_lead_only_to_known_statuses():
    assert set(STATUS_AFTER.values()) <= set(STATUSES)
    assert {"done", "cached", "failed", "skipped", "cancelled"} == FINAL_STATUSES


def test_synonyms_name_known_kinds():
    assert set(KIND_SYNONYMS.values()) == set(KINDS)
    assert KIND_SYNONYMS["prompt"] == "llm"


def test_the_widget_receives_the_vocabulary_as_data():
    sent = DagWidget().vocabulary
    assert sent == vocabulary()
    assert [k["name"] for k in sent["kinds"]] == ["llm", "python", "report"]
    assert "cached" in [s["name"] for s in sent["statuses"]]


def test_text_helpers():
    assert shorten("a  b\n c", 80) == "a b c"
    assert shorten("x" * 100, 10) == "x" * 9 + "…"

    def documented() -> None:
        """Make a chart.

        More words.
        """

    assert first_line(documented) == "Make a chart."
    assert first_line(lambda: None) == ""


def test_every_status_has_a_mark_the_widget_draws():
    from orchestra_nb._render import STATUS_MARK

    assert set(STATUS_MARK) == set(STATUSES)
