"""Page numbers for the lists that page through their rows (the timeline, the dashboard)."""

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
