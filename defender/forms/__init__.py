"""Forms, one module per console area."""


def _normalised(value):
    return value.strip() if isinstance(value, str) else value


def destination_changed(form, field_names):
    """Whether the form changes any of these fields from what is saved (ignoring surrounding whitespace).

    Used before keeping a saved secret for a blank secret field: a saved secret only goes where it went before.
    """
    cleaned = form.cleaned_data
    return any(
        name in cleaned and _normalised(cleaned[name]) != _normalised(getattr(form.instance, name))
        for name in field_names
    )
