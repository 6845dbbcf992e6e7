"""Page numbers for the lists that page through their rows (the timeline, the dashboard, the
patient list, the flowsheet)."""

from __future__ import annotations


class PageNumbers:
    """What a pager shows, from the list's ``page`` (from 1), ``per_page`` and ``total``
    rows; the same names as Flask-SQLAlchemy's pagination, which the audit trail uses."""

    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def prev_num(self) -> int:
        return self.page - 1

    @property
    def next_num(self) -> int:
        return self.page + 1


class RowPageNumbers(PageNumbers):
    """``PageNumbers`` for a page of ``rows`` counted from the first row of the list, and the
    "Patients 51–100 of 231" a pager says."""

    rows: list

    @property
    def first(self) -> int:
        """The position of the first row on this page, from 1 (0 when there are none)."""
        return (self.page - 1) * self.per_page + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0

    @property
    def past_end(self) -> bool:
        """A page number beyond the last page of a list that has rows."""
        return not self.rows and self.total > 0
