"""The one error type the services raise: a message a person can act on, never a secret.

Views, commands and the remote-node agent show ``str(error)`` as it is. Messages are built from our own words plus
values we chose to name (host, port, status, AADSTS code); text from a remote server only enters after ``redact``.
"""

from collections.abc import Iterable, Sequence
from datetime import datetime

from defender import presets
from defender.services.connection import ProxySettings


class DefenderError(Exception):
    """A failure talking to Entra ID or Defender, explained for the person who pressed the button."""

    def __init__(self, message: str, advice: str = "", code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.advice = advice
        self.code = code

    def __str__(self) -> str:
        return f"{self.message} {self.advice}".strip() if self.advice else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, advice={self.advice!r}, code={self.code!r})"


class ConnectionFailed(DefenderError):
    """DNS, TCP, timeouts: the request never got an HTTP answer."""


class ProxyFailed(ConnectionFailed):
    """The proxy refused, failed, or rejected its credentials."""


class TlsFailed(ConnectionFailed):
    """The TLS handshake or the certificate check failed."""


class TokenFailed(DefenderError):
    """Entra ID did not issue a token; ``code`` is the AADSTS number when there is one."""


class ApiFailed(DefenderError):
    """The API answered with an error status; ``code`` is the HTTP status."""


class PermissionMissing(ApiFailed):
    """The token lacks an application permission (a missing role, or a 403 from the API)."""


class NotFound(ApiFailed):
    """404: the API has no such resource (for machines: no recently seen machine matched)."""


class Throttled(ApiFailed):
    """429 or 503 beyond what we are willing to wait; ``retry_at`` says when to try again."""

    def __init__(
        self, message: str, advice: str = "", code: int | None = None, retry_at: datetime | None = None
    ) -> None:
        super().__init__(message, advice, code)
        self.retry_at = retry_at


class BadResponse(ApiFailed):
    """The answer was not what the API documents (malformed JSON, unexpected shape, a foreign next link)."""


class SecretDestinationChanged(DefenderError):
    """A saved secret would go somewhere other than where it was typed for (its record changed since), so it is not
    sent: the message names what changed and asks for the secret to be typed again."""


# Advice for the AADSTS codes a client-credentials flow meets; see the reference sheet, section 4.
AADSTS_ADVICE = {
    7000215: "The client secret is wrong: paste the secret's Value, not its ID (Secret ID).",
    7000222: "The client secret has expired: create a new one under Certificates & secrets and update it here.",
    7000218: "No client secret was sent: enter the client secret.",
    700016: "The application was not found in the tenant: check the client ID and the tenant ID.",
    90002: "The tenant was not found: check the tenant ID, the cloud and the Auth URL.",
    900023: "The tenant ID is not valid: enter the directory (tenant) ID GUID or a verified domain.",
    90019: "No tenant was given: enter the tenant ID.",
    50059: "No tenant was given: enter the tenant ID.",
    500011: "The API is not in this tenant: Defender is not provisioned there, or the resource is wrong.",
    70011: "The scope is not valid for this API: check the resource in Advanced options.",
    1002012: "The scope is not valid for this API: check the resource in Advanced options.",
    650052: "The tenant has not enabled the service this app needs: make sure Defender is provisioned.",
    700027: (
        "Entra ID refused the client assertion: its signature does not verify, or the certificate that signed it is "
        "not registered on the app. Upload this certificate (its public part) under Certificates & secrets of the "
        "app registration, or use the key that belongs to a certificate registered there."
    ),
    700024: "The client assertion is not within its valid time range: check this machine's clock.",
    700021: "The client assertion names another application: its issuer and subject must be the client ID.",
    700023: "The client assertion's audience is not this tenant's token endpoint: check the Auth URL and tenant ID.",
    7000112: "The application is disabled in the tenant: ask an administrator to enable it.",
    50034: "The account was not found: this integration needs an app registration, not a user.",
    53003: "A conditional access policy blocked the sign-in: exempt this app or the site's address.",
    50196: (
        "Entra ID detected a loop: too many identical token requests in a short time. It passes by itself; "
        "tokens are kept until near expiry, so check that nothing else asks for tokens with this app in a loop."
    ),
    90033: "Entra ID had a transient error: try again in a minute.",
}


def aadsts_advice(codes: Sequence[int]) -> tuple[int | None, str]:
    """The advice for the first known code, else a pointer to Microsoft's error page for the first code."""
    for code in codes:
        if code in AADSTS_ADVICE:
            return code, AADSTS_ADVICE[code]
    if codes:
        return codes[0], f"See https://login.microsoftonline.com/error?code={codes[0]} for what it means."
    return None, ""


# Where each flavour's application permissions are granted in the Azure portal.
PERMISSION_API: dict[str, str] = {
    presets.MDE: "APIs my organization uses > WindowsDefenderATP",
    presets.GRAPH: "Microsoft APIs > Microsoft Graph",
}


# The SIEM API's page documents one cause of a 403: "any of the domains is not managed by the tenant administrator or
# tenant state is deleted".
SIEM_FORBIDDEN = (
    "The SIEM API answers 403 when a domain of the request is not managed by the tenant's administrator, or the "
    "tenant is deleted: check the tenant ID, and that this app is the one registered for the SIEM connector in the "
    "Defender portal."
)


def permission_advice(flavour: str, roles: Iterable[str] | None = None) -> str:
    """Where to grant the application permissions this flavour needs (or just ``roles``)."""
    roles = list(roles or presets.REQUIRED_ROLES[flavour])
    if flavour not in PERMISSION_API or not roles:
        return SIEM_FORBIDDEN
    return (
        f"Grant {' and '.join(roles)} in the Azure portal > App registrations > this app > API permissions > "
        f"Add a permission > {PERMISSION_API[flavour]} > Application permissions, then Grant admin consent."
    )


# RFC 1929 gives each of the SOCKS5 user name and password a one-byte length. PySocks, which API calls and the Test's
# tunnel go through, writes that length as UTF-8 text, so from 128 bytes on it sends two bytes and the proxy misreads
# the rest: such credentials are refused here with a clear message instead.
SOCKS_CREDENTIAL_MAX = 255
SOCKS_LIBRARY_CREDENTIAL_MAX = 127


def socks_credentials_failure(
    proxy: ProxySettings | None, limit: int = SOCKS_LIBRARY_CREDENTIAL_MAX
) -> ProxyFailed | None:
    """A ProxyFailed when a SOCKS5 proxy rule's user name or password is longer than can be sent, else None."""
    if proxy is None or proxy.proxy_type != "socks5" or not proxy.username:
        return None
    for what, value in (("user name", proxy.username), ("password", proxy.password)):
        size = len(value.encode())
        if size > SOCKS_CREDENTIAL_MAX:
            return ProxyFailed(
                f"SOCKS5 allows user names and passwords of at most {SOCKS_CREDENTIAL_MAX} bytes; the proxy rule's "
                f"{what} has {size}.",
                "Use shorter credentials on the proxy and in the proxy rule, or an HTTP proxy.",
            )
        if size > limit:
            return ProxyFailed(
                f"The proxy rule's {what} has {size} bytes; this console sends SOCKS5 user names and passwords of at "
                f"most {limit} bytes.",
                "Use shorter credentials on the proxy and in the proxy rule, or an HTTP proxy.",
            )
    return None


def redact(text: str, *secrets: str | None) -> str:
    """Replace every secret (client secret, proxy password, token) found in text with '***'."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
