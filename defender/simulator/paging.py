"""Server-driven paging shared by the Defender and Graph collections: a page, and the link to the next one."""

from urllib.parse import quote, urlencode


def page(request, records, top, skip, page_size, drop_next_link_with_top=False, skip_option="$skip"):
    """(items, next_link or None, 1-based page number) for records, honouring $top/$skip and the server page size.

    With $top the client chose the page size; without it the server's page size applies. The next link is absolute
    and repeats the client's other options with an advanced ``skip_option`` ($skip, or Graph's $skiptoken, which is
    not bound by the $skip limit).
    """
    skip = skip or 0
    size = top if top is not None else page_size
    items = records[skip : skip + size]
    next_link = None
    if size and skip + size < len(records) and not (top is not None and drop_next_link_with_top):
        params = {name: value for name, value in request.params.items() if name not in ("$skip", "$skiptoken")}
        params[skip_option] = str(skip + size)
        query = urlencode(params, quote_via=quote, safe="$'(),:")
        next_link = f"{request.origin}{quote(request.path)}?{query}"
    return items, next_link, (skip // size + 1 if size else 1)
