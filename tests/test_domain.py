"""Seat labels and layouts: pure functions."""

from __future__ import annotations

import pytest

from app.domain import (
    SEAT_LABEL,
    SectionSpec,
    layout_seats,
    new_client_id,
    row_index,
    row_label,
    show_of_client_id,
    split_label,
)


@pytest.mark.parametrize(
    ("index", "label"),
    [
        (0, "A"),
        (25, "Z"),
        (26, "AA"),
        (27, "AB"),
        (51, "AZ"),
        (52, "BA"),
        (701, "ZZ"),
        (702, "AAA"),
        (18277, "ZZZ"),
    ],
)
def test_row_labels_continue_after_z(index: int, label: str) -> None:
    assert row_label(index) == label
    assert row_index(label) == index


def test_every_row_label_is_distinct_up_to_zzz() -> None:
    labels = [row_label(i) for i in range(18278)]
    assert len(set(labels)) == len(labels)
    assert all(SEAT_LABEL.match(f"{label}1") for label in labels)


def test_split_label() -> None:
    assert split_label("AB12") == ("AB", 12)
    assert split_label("A1") == ("A", 1)


def test_layout_letters_rows_across_sections_so_labels_are_unique() -> None:
    seats = layout_seats([SectionSpec("Stalls", 20, 5), SectionSpec("Circle", 10, 3, "C", 100)])
    labels = [seat.label for seat in seats]
    assert len(labels) == len(set(labels)) == 20 * 5 + 10 * 3
    assert labels[:2] == ["A1", "A2"]
    assert "T5" in labels and "U1" in labels and "AD3" in labels  # rows 21..30 go U..AD
    circle = [seat for seat in seats if seat.section == "Circle"]
    assert {seat.category for seat in circle} == {"C"}
    # sections stack with a one-row gap
    assert min(seat.y for seat in circle) == 21


def test_client_ids_carry_their_show_and_are_unguessable() -> None:
    first, second = new_client_id(42), new_client_id(42)
    assert first != second
    assert show_of_client_id(first) == 42
    assert len(first.split(".", 1)[1]) >= 22
    for bad in [
        "",
        "42",
        "x.abcdefabcdefabcdefabcdef",
        "0.abcdefabcdefabcdefabcdef",
        "42.short",
        "42.abcdefabcdefabcdef/../x",
    ]:
        assert show_of_client_id(bad) is None
