"""Forms, one module per console area."""

from defender import destinations

# A page whose saving moves other records' secrets asks first; its second Submit carries this name and value.
CONFIRM_RETYPING = "confirm_retyping"


def retype_message(secret: str, reasons: list[str]) -> str:
    """What a form says next to a blank secret field when the saved secret could not go where the form points."""
    if reasons == [destinations.NOT_RECORDED]:
        return f"Type the {secret} again: no destination is recorded for the saved one."
    return (
        f"Type the {secret} again: where it is sent changed ({destinations.spoken_list(reasons)}), and a saved "
        f"{secret} only goes where it went before."
    )


def confirmed_retyping(form) -> bool:
    return form.data.get(CONFIRM_RETYPING) == "yes"


def moved_secrets_message(integrations) -> str:
    """Before saving a change that moves the client secrets of these integrations: which ones, and what then."""
    names = destinations.spoken_list([integration.name for integration in integrations])
    if len(integrations) == 1:
        then = f"Saving changes where the client secret of {names} goes: it must then be typed again"
    else:
        then = f"Saving changes where the client secrets of {names} go: each must then be typed again"
    return f"{then} on the integration's Edit page before its next Test or Get alerts. Press Save anyway to go ahead."
