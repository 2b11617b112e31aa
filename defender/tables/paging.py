"""Paging every table of the console within one documented range, whatever ``?per_page=`` asks for, and without
reading past every earlier row to show a late page."""

from typing import Any

import django_tables2 as tables
from django.core.exceptions import FieldDoesNotExist
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django_tables2.rows import BoundRows

# The smallest and largest page a table shows (README: Using it). Below: pointless; above: pages of megabytes.
PER_PAGE_MIN = 10
PER_PAGE_MAX = 200


def clamped_per_page(per_page: int | None, default: int) -> int:
    """``per_page`` within PER_PAGE_MIN..PER_PAGE_MAX; the table's default when it is missing or zero."""
    return min(max(per_page or default, PER_PAGE_MIN), PER_PAGE_MAX)


def _queryset(rows: Any) -> QuerySet[Any] | None:
    """The queryset under a table's rows (BoundRows -> TableQuerysetData -> QuerySet), if there is one."""
    data = getattr(getattr(rows, "data", None), "data", None)
    return data if isinstance(data, QuerySet) else None


def totally_ordered(queryset: QuerySet[Any]) -> bool:
    """Whether the order ends on a unique column, so that read backwards it gives exactly the same rows reversed."""
    keys = list(queryset.query.order_by or queryset.model._meta.ordering)
    if not keys or not all(isinstance(key, str) for key in keys):
        return False
    last = keys[-1].lstrip("-")
    if last == "pk":
        return True
    try:
        field = queryset.model._meta.get_field(last)
    except FieldDoesNotExist:  # a related path or an annotation: not known to be unique
        return False
    return bool(field.primary_key or field.unique)


# In a table of more than this many rows, a page reads its keys first (the sort's columns and the key, from the
# sort's index alone) and then only its own rows: an OFFSET over whole rows read and sorted every skipped row's
# columns (it spilled to disk at 50,000), and a sort no index serves in full sorted whole rows for a page of 50.
KEYS_FIRST_ABOVE = 1_000


class IndexedPaginator(Paginator):
    """Pages past the middle are read from the far end, in the reversed order, then put back in order; pages of a
    large table read their keys first.

    An OFFSET reads and throws away every row before the page: the last page of 100,000 alerts read 100,000 rows and
    spilled its sort to disk. Read backwards along the same index, the last page costs what the first does, and no
    page skips more than half the rows; those it skips, it skips in the index (an index-only scan of the sort's
    columns and the key), and then it reads its own rows by key. Page numbers and links are those of Django's
    Paginator.
    """

    def __init__(self, *args: Any, known_count: int | None = None, **kwargs: Any) -> None:
        """``known_count``: the number of rows when it is kept elsewhere (an actor's alert count), so that the page
        does not count them again."""
        super().__init__(*args, **kwargs)
        if known_count is not None:
            self.__dict__["count"] = known_count  # Paginator.count is a cached_property: this is its cached value

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        queryset = _queryset(self.object_list)
        if queryset is None or not totally_ordered(queryset):
            return super().page(number)
        backwards = bottom > self.count // 2
        if backwards:
            queryset, bottom, top = queryset.reverse(), self.count - top, self.count - bottom
        if self.count <= KEYS_FIRST_ABOVE:
            if not backwards:
                return super().page(number)
            records = list(queryset[bottom:top])
        else:
            keys = list(queryset.values_list("pk", flat=True)[bottom:top])
            by_key = {record.pk: record for record in queryset.filter(pk__in=keys)}
            records = [by_key[key] for key in keys if key in by_key]
        if backwards:
            records.reverse()
        bound: Any = self.object_list
        rows = BoundRows(records, bound.table, getattr(bound, "pinned_data", None))
        return Page(rows, number, self)


class ConsoleTable(tables.Table):
    """The base of every table: a page size from the query string is clamped, never trusted, and late pages are read
    from the end (IndexedPaginator).

    django-tables2 hands ``?per_page=`` to the paginator as typed, so -1 broke the page and 10000 rendered ten
    thousand rows.
    """

    def paginate(self, paginator_class=Paginator, per_page=None, page=1, *args, **kwargs):
        per_page = clamped_per_page(per_page, self._meta.per_page)
        if paginator_class is Paginator:
            paginator_class = IndexedPaginator
        return super().paginate(paginator_class, per_page, page, *args, **kwargs)
