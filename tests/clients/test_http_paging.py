"""page_ranges: the pure index arithmetic behind datalog/logbook paging."""

import pytest

from emu_opcua.clients.http import page_ranges


@pytest.mark.parametrize("first,last", [(0, 6999), (1, 7000), (5, 5), (10, 3009), (10, 3010), (0, 2999)])
def test_ascending_pages_cover_the_range_once(first, last):
    pages = list(page_ranges(first, last, 3000))
    covered = [i for a, b in pages for i in range(a, b + 1)]
    assert covered == list(range(first, last + 1))
    assert all(0 <= b - a < 3000 for a, b in pages)


@pytest.mark.parametrize("first,last", [(6999, 0), (7000, 1), (3010, 10), (3009, 10)])
def test_descending_pages_cover_the_range_once(first, last):
    pages = list(page_ranges(first, last, 3000))
    covered = [i for a, b in pages for i in range(a, b - 1, -1)]
    assert covered == list(range(first, last - 1, -1))
    assert all(0 <= a - b < 3000 for a, b in pages)


def test_page_counts():
    assert len(list(page_ranges(1, 7000, 3000))) == 3
    assert len(list(page_ranges(1, 6000, 3000))) == 2
    assert len(list(page_ranges(1, 2048 * 2 + 1, 2048))) == 3


def test_page_size_must_be_positive():
    with pytest.raises(ValueError):
        list(page_ranges(0, 10, 0))
