"""Paging every table of the console within one documented range, whatever ``?per_page=`` asks for."""

import django_tables2 as tables
from django.core.paginator import Paginator

# The smallest and largest page a table shows (README: Using it). Below: pointless; above: pages of megabytes.
PER_PAGE_MIN = 10
PER_PAGE_MAX = 200


def clamped_per_page(per_page: int | None, default: int) -> int:
    """``per_page`` within PER_PAGE_MIN..PER_PAGE_MAX; the table's default when it is missing or zero."""
    return min(max(per_page or default, PER_PAGE_MIN), PER_PAGE_MAX)


class ConsoleTable(tables.Table):
    """The base of every table: a page size from the query string is clamped, never trusted.

    django-tables2 hands ``?per_page=`` to the paginator as typed, so -1 broke the page and 10000 rendered ten
    thousand rows.
    """

    def paginate(self, paginator_class=Paginator, per_page=None, page=1, *args, **kwargs):
        per_page = clamped_per_page(per_page, self._meta.per_page)
        return super().paginate(paginator_class, per_page, page, *args, **kwargs)
