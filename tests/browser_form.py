"""What a browser would submit from a form on a page: the successful controls and their values, as the HTML standard
builds the form data set (textareas with CRLF line endings, checked boxes only, selected options, no disabled
controls). Tests post it back to prove that a form submitted unchanged changes nothing."""

from html.parser import HTMLParser


class _FormReader(HTMLParser):
    def __init__(self, form_id):
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.depth = 0  # inside the form while > 0
        self.controls = []  # (name, value) in document order
        self._select = None  # (name, multiple, options [(value, selected)])
        self._option = None
        self._textarea = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "form":
            if self.depth or attributes.get("id") == self.form_id:
                self.depth += 1
            return
        if not self.depth:
            return
        name = attributes.get("name")
        disabled = "disabled" in attributes
        if tag == "input" and name and not disabled:
            kind = attributes.get("type", "text").lower()
            if kind in ("submit", "button", "reset", "image", "file"):
                return
            if kind in ("checkbox", "radio"):
                if "checked" in attributes:
                    self.controls.append((name, attributes.get("value", "on")))
                return
            self.controls.append((name, attributes.get("value", "")))
        elif tag == "select" and name and not disabled:
            self._select = (name, "multiple" in attributes, [])
        elif tag == "option" and self._select is not None:
            self._option = [attributes.get("value"), "selected" in attributes, ""]
        elif tag == "textarea" and name and not disabled:
            self._textarea = [name, ""]

    def handle_data(self, data):
        if self._option is not None:
            self._option[2] += data
        if self._textarea is not None:
            self._textarea[1] += data

    def handle_endtag(self, tag):
        if tag == "form" and self.depth:
            self.depth -= 1
        elif tag == "option" and self._option is not None:
            value, selected, text = self._option
            self._select[2].append((text.strip() if value is None else value, selected))
            self._option = None
        elif tag == "select" and self._select is not None:
            name, multiple, options = self._select
            chosen = [value for value, selected in options if selected]
            if not chosen and not multiple and options:
                chosen = [options[0][0]]  # a single select without a selected option submits its first
            self.controls.extend((name, value) for value in chosen)
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            name, text = self._textarea
            # A newline right after <textarea> is not part of its value; submitted values use CRLF line endings.
            text = text[1:] if text.startswith("\n") else text
            self.controls.append((name, text.replace("\r\n", "\n").replace("\n", "\r\n")))
            self._textarea = None


def form_data(html, form_id):
    """The form data a browser submits from the form with this id, as a dict of lists (for Django's test client)."""
    reader = _FormReader(form_id)
    reader.feed(html)
    data = {}
    for name, value in reader.controls:
        data.setdefault(name, []).append(value)
    if not data:
        raise AssertionError(f"no form with id {form_id!r} and fields on the page")
    return data
