"""Advanced hunting in the simulator: a strict evaluator of the small KQL subset the site sends, over the
DeviceProcessEvents rows of the procedures it was told ran.

Supported: a table name, then ``| where`` with ``==``, ``=~``, ``!=``, ``has``, ``contains``, ``startswith``,
``in~ (...)`` and ``between (datetime(X) .. datetime(Y))`` joined by ``and``/``or`` (``and`` binds tighter,
parentheses group); ``| project a, b``; ``| take N`` or ``| limit N``; ``| order by C asc|desc``. Anything else is
refused with the 400 that Microsoft's service sends for a query it cannot run. KQL's ``has`` matches a whole term,
case-insensitively; ``contains`` any substring and ``startswith`` a prefix, case-insensitively; ``=~`` and ``in~``
compare case-insensitively; ``between`` is inclusive on both ends.
"""

import re
from datetime import UTC, datetime
from typing import Any

from . import scopes
from .defender_api import error as defender_error
from .defender_api import forbidden
from .graph_api import error as graph_error
from .reply import Reply
from .seed import jsonable

TABLES = ("DeviceProcessEvents",)
COLUMNS = (
    "Timestamp", "DeviceId", "DeviceName", "ActionType", "FileName", "FolderPath", "SHA1", "SHA256",
    "ProcessCommandLine", "AccountName", "InitiatingProcessFileName", "InitiatingProcessCommandLine",
)  # fmt: skip
TYPES = {"Timestamp": "DateTime"}
TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<datetime>datetime\([^()]*\))|(?P<op>==|=~|!=|in~|\.\.|[|(),])|(?P<number>\d+)'
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"
)
MOST_ROWS = 100_000


class QueryError(ValueError):
    """A query the simulator (and so this subset) cannot run; the message is the 400's."""


def _tokens(text: str) -> list[tuple[str, str]]:
    found, position = [], 0
    text = text.strip()
    while position < len(text):
        match = TOKEN.match(text, position)
        if not match or match.end() == position:
            raise QueryError(f"Syntax error: unexpected character at position {position}.")
        kind = match.lastgroup or ""
        found.append((kind, match.group(kind)))
        position = match.end()
        while position < len(text) and text[position].isspace():
            position += 1
    return found


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r", "t": "\t"}.get(m.group(1), m.group(1)), body)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.index = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.index] if self.index < len(self.tokens) else ("end", "")

    def take(self, kind: str | None = None, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if (kind and token[0] != kind) or (value and token[1].lower() != value.lower()):
            raise QueryError(f"Syntax error: expected {value or kind}, found '{token[1] or 'end of query'}'.")
        self.index += 1
        return token

    def column(self) -> str:
        name = self.take("word")[1]
        if name not in COLUMNS:
            raise QueryError(f"'{name}' is not a column of DeviceProcessEvents.")
        return name

    def value(self) -> Any:
        kind, text = self.peek()
        if kind == "string":
            self.index += 1
            return _unquote(text)
        if kind == "number":
            self.index += 1
            return int(text)
        if kind == "datetime":
            self.index += 1
            raw = text[len("datetime(") : -1].strip()
            try:
                moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                raise QueryError(f"'{raw}' is not a datetime.") from None
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        raise QueryError(f"Syntax error: expected a value, found '{text or 'end of query'}'.")

    def condition(self):
        if self.peek()[1] == "(":
            self.take("op", "(")
            inner = self.expression()
            self.take("op", ")")
            return inner
        column = self.column()
        kind, op = self.peek()
        op = op.lower()
        self.index += 1
        if op in ("==", "=~", "!=", "has", "contains", "startswith"):
            wanted = self.value()
            return lambda row: _compare(row.get(column), op, wanted)
        if op == "in~":
            self.take("op", "(")
            values = [self.value()]
            while self.peek()[1] == ",":
                self.take("op", ",")
                values.append(self.value())
            self.take("op", ")")
            folded = {str(value).lower() for value in values}
            return lambda row: str(row.get(column) or "").lower() in folded
        if op == "between":
            self.take("op", "(")
            low = self.value()
            self.take("op", "..")
            high = self.value()
            self.take("op", ")")
            return lambda row: row.get(column) is not None and low <= row.get(column) <= high
        raise QueryError(f"The operator '{op}' is not supported here.")

    def conjunction(self):
        parts = [self.condition()]
        while self.peek() == ("word", "and"):
            self.index += 1
            parts.append(self.condition())
        return lambda row: all(part(row) for part in parts)

    def expression(self):
        parts = [self.conjunction()]
        while self.peek() == ("word", "or"):
            self.index += 1
            parts.append(self.conjunction())
        return lambda row: any(part(row) for part in parts)


def _compare(actual: Any, op: str, wanted: Any) -> bool:
    if op == "==":
        return actual == wanted
    if op == "!=":
        return actual != wanted
    text, target = str(actual or "").lower(), str(wanted).lower()
    if op == "=~":
        return text == target
    if op == "contains":
        return target in text
    if op == "startswith":
        return text.startswith(target)
    # has: the value is a whole term of the text (terms are runs of letters and digits).
    return target in re.findall(r"[a-z0-9]+", text) if re.fullmatch(r"[a-z0-9]+", target) else target in text


def evaluate(text: str, rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """(the columns, the rows) the query gives over the table's rows; QueryError for what it cannot run."""
    if not isinstance(text, str) or not text.strip():
        raise QueryError("The query is empty.")
    parser = _Parser(text)
    table = parser.take("word")[1]
    if table not in TABLES:
        raise QueryError(f"Failed to resolve table expression named '{table}'.")
    result = list(rows)
    columns = list(COLUMNS)
    while parser.peek()[0] != "end":
        parser.take("op", "|")
        operator = parser.take("word")[1].lower()
        if operator == "where":
            keep = parser.expression()
            result = [row for row in result if keep(row)]
        elif operator == "project":
            columns = [parser.column()]
            while parser.peek()[1] == ",":
                parser.take("op", ",")
                columns.append(parser.column())
        elif operator in ("take", "limit"):
            result = result[: int(parser.take("number")[1])]
        elif operator == "order":
            parser.take("word", "by")
            column = parser.column()
            descending = True  # KQL's default order is descending
            if parser.peek()[1].lower() in ("asc", "desc"):
                descending = parser.take("word")[1].lower() == "desc"
            result.sort(key=lambda row: (row.get(column) is None, row.get(column)), reverse=descending)
        else:
            raise QueryError(f"The query operator '{operator}' is not supported here.")
    return columns, [{column: row.get(column) for column in columns} for row in result[:MOST_ROWS]]


def schema(columns: list[str]) -> list[tuple[str, str]]:
    return [(column, TYPES.get(column, "String")) for column in columns]


def hunting_reply(request, claims, telemetry, graph: bool):
    """The answer of MDE's POST /api/advancedqueries/run (``graph`` False) or Graph's POST /security/runHuntingQuery,
    in each one's shape and error bodies."""
    error = graph_error if graph else defender_error
    if request.method != "POST":
        return error(request, 405, "BadRequest", f"The HTTP method {request.method} is not supported.")
    roles = set(claims.get("roles", []))
    needed = scopes.THREAT_HUNTING_ROLES if graph else scopes.ADVANCED_QUERY_ROLES
    if not roles & set(needed):
        if graph:
            return graph_error(
                request, 403, "Forbidden", f"Missing application roles. API required roles: {needed[0]}."
            )
        return forbidden(request, needed)
    try:
        body = request.json()
    except ValueError:
        return error(request, 400, "BadRequest", "The request body is not JSON.")
    text = body.get("Query") if isinstance(body, dict) else None
    try:
        columns, rows = evaluate(text if isinstance(text, str) else "", telemetry)
    except QueryError as exc:
        return error(request, 400, "BadRequest", f"Query could not be parsed: {exc}")
    results = [jsonable(row) for row in rows]
    if graph:
        names = [{"name": name, "type": kind} for name, kind in schema(columns)]
        context = f"{request.origin}/v1.0/$metadata#microsoft.graph.security.huntingQueryResults"
        return Reply(200, {"@odata.context": context, "schema": names, "results": results})
    stats = {
        "ExecutionTime": 0.01,
        "resource_usage": {"cache": {}},
        "dataset_statistics": [{"table_row_count": len(results)}],
    }
    names = [{"Name": name, "Type": kind} for name, kind in schema(columns)]
    return Reply(200, {"Stats": stats, "Schema": names, "Results": results})
