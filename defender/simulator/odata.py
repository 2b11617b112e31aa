"""A small OData v4 `$filter`, `$orderby`, `$top` and `$skip` reader, strict where the real services are strict.

Grammar: comparisons `field op literal` (eq ne gt ge lt le, any case), `startswith|endswith|contains(field,'text')`,
joined by `and`/`or`, negated by `not`, grouped by optional parentheses, and lambdas over a collection property:
`machineTags/any(tag: tag eq 'Lab')`, `evidence/any(e: e/deviceDnsName eq 'ws-01')` (a type cast segment such as
`e/microsoft.graph.security.deviceEvidence/deviceDnsName` narrows to items of that type). Literals: 'quoted strings'
('' escapes a quote), unquoted ISO dates and datetimes (`2024-01-01T00:00:00Z`), numbers, true, false, null. Comparing
a datetime field with a quoted string is a type error, as it is for the real Edm.DateTimeOffset properties.

Text comparison is case-sensitive on the services' fields (Field(case_sensitive=True)), as OData's eq and startswith
are: a client that sends 'WS-FIN-07' does not find ws-fin-07.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime

OPERATORS = {
    "eq": ("Equal", lambda a, b: a == b),
    "ne": ("NotEqual", lambda a, b: a != b),
    "gt": ("GreaterThan", lambda a, b: a > b),
    "ge": ("GreaterThanOrEqual", lambda a, b: a >= b),
    "lt": ("LessThan", lambda a, b: a < b),
    "le": ("LessThanOrEqual", lambda a, b: a <= b),
}
FUNCTIONS = {
    "startswith": lambda value, text: value.startswith(text),
    "endswith": lambda value, text: value.endswith(text),
    "contains": lambda value, text: text in value,
}
EDM_TYPES = {
    "string": "Edm.String",
    "datetime": "Edm.DateTimeOffset",
    "number": "Edm.Int64",
    "collection": "Collection(Edm.String)",
}

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^']|'')*')
    | (?P<datetime>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?)(?![\w.:-])
    | (?P<number>-?\d+(?:\.\d+)?)(?![\w.])
    | (?P<lparen>\() | (?P<rparen>\)) | (?P<comma>,) | (?P<colon>:)
    | (?P<word>[A-Za-z_][A-Za-z0-9_./]*)
    )""",
    re.VERBOSE,
)


class ODataError(ValueError):
    """A query option the service refuses with 400; the message names what is wrong."""


@dataclass(frozen=True)
class Field:
    """A filterable property: its name as documented, its type, and how to read it from a record.

    A "collection" field is a list (of text, or of objects whose filterable properties are ``items``), filtered only
    through any()/all()."""

    name: str
    kind: str  # "string", "datetime", "number" or "collection"
    get: object = None
    case_sensitive: bool = False
    items: object = None  # for a collection of objects: {property name: Field}

    def value(self, record):
        value = self.get(record) if self.get else record.get(self.name)
        if self.kind == "datetime" and isinstance(value, str):
            return parse_datetime(value)
        if self.kind == "string" and isinstance(value, str) and not self.case_sensitive:
            return value.lower()
        return value

    def fold(self, literal):
        """The literal as compared with this field's values."""
        return literal.lower() if isinstance(literal, str) and not self.case_sensitive else literal


def parse_datetime(text):
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _tokens(text):
    position, tokens = 0, []
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise ODataError(f"Syntax error at position {position} in '{text}'.")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text, fields, entity, known):
        self.text = text
        self.fields = {name.lower(): field for name, field in fields.items()}
        self.variable = None  # inside a lambda: (its variable's name, the collection's Field)
        self.entity = entity
        self.known = {name.lower() for name in known}
        self.tokens = _tokens(text)
        self.index = 0

    def parse(self):
        if not self.tokens:
            raise ODataError("The $filter query option is empty.")
        predicate = self.expression()
        if self.index < len(self.tokens):
            self.fail()
        return predicate

    def fail(self):
        position = self.tokens[self.index][2] if self.index < len(self.tokens) else len(self.text)
        raise ODataError(f"Syntax error at position {position} in '{self.text}'.")

    def peek(self, offset=0):
        index = self.index + offset
        return self.tokens[index] if index < len(self.tokens) else (None, None, len(self.text))

    def take(self, kind, word=None):
        token = self.peek()
        if token[0] != kind or (word and token[1].lower() != word):
            self.fail()
        self.index += 1
        return token[1]

    def at_word(self, word):
        kind, value, _ = self.peek()
        return kind == "word" and value.lower() == word

    def expression(self):
        terms = [self.conjunction()]
        while self.at_word("or"):
            self.index += 1
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else lambda record: any(term(record) for term in terms)

    def conjunction(self):
        terms = [self.unary()]
        while self.at_word("and"):
            self.index += 1
            terms.append(self.unary())
        return terms[0] if len(terms) == 1 else lambda record: all(term(record) for term in terms)

    def unary(self):
        if self.at_word("not"):
            self.index += 1
            inner = self.unary()
            return lambda record: not inner(record)
        if self.peek()[0] == "lparen":
            self.index += 1
            inner = self.expression()
            self.take("rparen")
            return inner
        if self.peek()[0] == "word" and self.peek(1)[0] == "lparen":
            if self.peek()[1].lower().endswith(("/any", "/all")):
                return self.lambda_()
            return self.function()
        return self.comparison()

    def lambda_(self):
        """collection/any(variable: predicate) or collection/all(...), over a collection field."""
        word = self.take("word")
        name, _, operator = word.rpartition("/")
        collection = self.fields.get(name.lower())
        if collection is None or collection.kind != "collection":
            if collection is None and name.lower() not in self.known:
                raise ODataError(f"Could not find a property named '{name}' on type '{self.entity}'.")
            raise ODataError(f"The property '{name}' cannot be used in the $filter query option.")
        if self.variable is not None:
            raise ODataError("Nested lambda expressions are not supported.")
        self.take("lparen")
        variable = self.take("word")
        self.take("colon")
        self.variable = (variable.lower(), collection)
        inner = self.expression()
        self.variable = None
        self.take("rparen")
        quantifier = any if operator.lower() == "any" else all

        def predicate(record):
            items = collection.value(record)
            return isinstance(items, list) and quantifier(inner(item) for item in items)

        return predicate

    def lambda_field(self, name):
        """A property of the lambda's variable: the variable itself (a list of text), or variable[/cast]/property."""
        variable, collection = self.variable
        parts = name.split("/")
        if parts[0].lower() != variable:
            raise ODataError(f"Could not find a property named '{name}' on type '{self.entity}'.")
        if len(parts) == 1 and collection.items is None:
            return Field(variable, "string", lambda item: item, collection.case_sensitive)
        cast = parts[1] if len(parts) == 3 else None
        wanted = (collection.items or {}).get(parts[-1].lower()) if len(parts) in (2, 3) else None
        if wanted is None:
            raise ODataError(f"Could not find a property named '{parts[-1]}' on the items of '{collection.name}'.")
        if cast is None:
            return wanted
        type_name = "#" + cast

        def read(item):
            return wanted.value(item) if item.get("@odata.type") == type_name else None

        return Field(wanted.name, wanted.kind, read, True)

    def field(self):
        name = self.take("word")
        if self.variable is not None:
            return self.lambda_field(name)
        field = self.fields.get(name.lower())
        if field is None:
            if name.lower() in self.known:
                raise ODataError(f"The property '{name}' cannot be used in the $filter query option.")
            raise ODataError(f"Could not find a property named '{name}' on type '{self.entity}'.")
        return field

    def literal(self):
        kind, value, _ = self.peek()
        self.index += 1
        if kind == "string":
            return "string", value[1:-1].replace("''", "'")
        if kind == "datetime":
            return "datetime", parse_datetime(value)
        if kind == "number":
            return "number", float(value) if "." in value else int(value)
        if kind == "word" and value.lower() in ("true", "false"):
            return "boolean", value.lower() == "true"
        if kind == "word" and value.lower() == "null":
            return "null", None
        self.index -= 1
        self.fail()

    def function(self):
        name = self.take("word")
        function = FUNCTIONS.get(name.lower())
        if function is None:
            raise ODataError(f"An unknown function with name '{name}' was found.")
        self.take("lparen")
        field = self.field()
        self.take("comma")
        kind, text = self.literal()
        self.take("rparen")
        if field.kind != "string" or kind != "string":
            raise ODataError(f"No function signature for the function with name '{name}' matches the arguments.")
        text = field.fold(text)
        return lambda record: isinstance(value := field.value(record), str) and function(value, text)

    def comparison(self):
        field = self.field()
        kind, operator, _ = self.peek()
        if kind != "word" or operator.lower() not in OPERATORS:
            self.fail()
        self.index += 1
        operator_name, compare = OPERATORS[operator.lower()]
        literal_kind, literal = self.literal()
        if literal_kind not in ("null", field.kind):
            raise ODataError(
                "A binary operator with incompatible types was detected. Found operand types "
                f"'{EDM_TYPES[field.kind]}' and '{EDM_TYPES.get(literal_kind, 'Edm.' + literal_kind.title())}' "
                f"for operator kind '{operator_name}'."
            )
        literal = field.fold(literal)
        if literal is None:
            return lambda record: compare(field.value(record) is None, True)

        def predicate(record):
            value = field.value(record)
            return value is not None and compare(value, literal)

        return predicate


def parse_filter(text, fields, entity, known=()):
    """A predicate over records for a `$filter` value; `known` are properties that exist but cannot be filtered."""
    return _Parser(text, fields, entity, known).parse()


def parse_orderby(text, fields):
    """`field [asc|desc]` over the given sortable fields, as (Field, descending)."""
    parts = text.split()
    if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
        raise ODataError(f"Syntax error in the $orderby query option '{text}'.")
    field = {name.lower(): field for name, field in fields.items()}.get(parts[0].lower())
    if field is None:
        raise ODataError(f"The property '{parts[0]}' cannot be used in the $orderby query option.")
    return field, len(parts) == 2 and parts[1].lower() == "desc"


def sort_records(records, field, descending):
    # Records without a value sort last either way, like nulls in the real services' default collation.
    present = [record for record in records if field.value(record) is not None]
    missing = [record for record in records if field.value(record) is None]
    return sorted(present, key=field.value, reverse=descending) + missing


def parse_count_option(params, name, maximum=None):
    """A non-negative integer query option ($top, $skip), or None when absent."""
    if name not in params:
        return None
    raw = params[name]
    if not raw.isdigit():
        raise ODataError(f"Invalid value '{raw}' for the {name} query option found.")
    value = int(raw)
    if maximum is not None and value > maximum:
        raise ODataError(
            f"The limit of '{maximum}' for Top query has been exceeded."
            f" The value from the incoming request is '{value}'."
        )
    return value
