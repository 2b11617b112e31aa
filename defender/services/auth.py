"""Tokens from Entra ID (client credentials) for the three API flavours, reused until they are near expiry.

One credential object per credential set is kept while the process lives (services.process); its key holds the
authority, tenant, client ID, a hash of the secret, the proxy and the TLS trust, so a corrected secret or a new CA
takes effect at once (a new msal app, whose HTTP cache does not replay the previous 400), while an unchanged
integration reuses its token.

msal's HTTP cache also replays a 429 from Entra ID for its Retry-After (up to an hour) without asking again. Get
alerts lets it, and says for how long Entra ID throttled the app; a Test empties that cache first, so that it reports
what Entra ID answers now.
"""

import base64
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import msal
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS
from msal.oauth2cli.assertion import JwtAssertionCreator

from defender import presets
from defender.services import budget
from defender.services.client import ApiClient, retry_after_seconds
from defender.services.client_certificate import CertificateCredential, parse_certificate_credential
from defender.services.connection import ConnectionSettings
from defender.services.errors import BadResponse, Throttled, TokenFailed, aadsts_advice, redact
from defender.services.process import PROCESS, Kept
from defender.services.transport import Response, Transport
from defender.services.trust import trust_for

logger = logging.getLogger(__name__)

# msal treats a token with less than five minutes left as expired; the v1 (SIEM) path uses the same margin.
REFRESH_MARGIN = 300

# Resources documented for the Defender for Endpoint API (reference sheet section 1). The regional API hosts all
# take the global resource; the US government clouds have their own.
MDE_GLOBAL_RESOURCE = "https://api.securitycenter.microsoft.com"
MDE_RESOURCES = {
    MDE_GLOBAL_RESOURCE,
    "https://api.securitycenter.windows.com",
    "https://securitycenter.onmicrosoft.com/windowsatpservice",
    "https://api.security.microsoft.com",
    "https://api-gcc.securitycenter.microsoft.us",
    "https://api-gov.securitycenter.microsoft.us",
}
GRAPH_GLOBAL_RESOURCE = "https://graph.microsoft.com"
GRAPH_RESOURCES = {GRAPH_GLOBAL_RESOURCE, "https://graph.microsoft.us", "https://dod-graph.microsoft.us"}
SIEM_RESOURCE = "https://graph.windows.net"


def authority_url(settings: ConnectionSettings) -> str:
    """https://host/{tenant} from the Auth URL and tenant ID.

    The Auth URL may be a bare authority (https://login.microsoftonline.com) or a full token URL copied from the
    portal (…/{tenant}/oauth2/v2.0/token or …/oauth2/token); only scheme and host (and port) are kept.
    """
    parts = urlsplit(settings.auth_url.strip())
    return f"{parts.scheme}://{parts.netloc}/{settings.tenant_id.strip()}"


def _sign_in_host(settings: ConnectionSettings) -> str:
    return urlsplit(settings.auth_url.strip()).netloc


def resource_for(settings: ConnectionSettings) -> str:
    """The resource (audience) the token is for, per flavour and cloud."""
    resource = settings.resource.strip().rstrip("/")
    if resource.endswith("/.default"):
        resource = resource[: -len("/.default")]
    host = settings.host.lower()
    if settings.flavour == presets.MDE:
        if resource in MDE_RESOURCES:
            return resource
        if host.endswith(".microsoft.us"):
            return (
                "https://api-gcc.securitycenter.microsoft.us"
                if host.startswith("api-gcc.")
                else ("https://api-gov.securitycenter.microsoft.us")
            )
        return MDE_GLOBAL_RESOURCE
    if settings.flavour == presets.GRAPH:
        if resource in GRAPH_RESOURCES:
            return resource
        if f"https://{host}" in GRAPH_RESOURCES:
            return f"https://{host}"
        return GRAPH_GLOBAL_RESOURCE
    return resource or SIEM_RESOURCE


def scope_for(settings: ConnectionSettings) -> str:
    """The v2 scope: the resource plus /.default (client credentials take only /.default scopes)."""
    return f"{resource_for(settings)}/.default"


def token_claims(access_token: str) -> dict[str, Any]:
    """The JWT payload, decoded without verifying the signature: for reporting (roles, audience), never for trust."""
    try:
        payload = access_token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


@dataclass(frozen=True)
class Token:
    access_token: str = field(repr=False)
    expires_at: datetime
    audience: str  # the scope (v2) or resource (v1) it was asked for
    from_cache: bool

    @property
    def claims(self) -> dict[str, Any]:
        return token_claims(self.access_token)

    @property
    def roles(self) -> tuple[str, ...]:
        roles = self.claims.get("roles") or []
        return tuple(roles) if isinstance(roles, list) else ()


def _credential_key(settings: ConnectionSettings) -> Hashable:
    secret_hash = hashlib.sha256(f"{settings.client_secret}\0{settings.client_certificate}".encode()).hexdigest()
    proxy = settings.proxy
    proxy_key = None
    if proxy is not None:
        password_hash = hashlib.sha256(proxy.password.encode()).hexdigest()
        proxy_key = (proxy.url(with_credentials=False), proxy.username, password_hash, proxy.bypass_hosts)
    return (
        settings.flavour,
        authority_url(settings).lower(),
        settings.client_id.strip().lower(),
        secret_hash,
        resource_for(settings),
        proxy_key,
        trust_for(settings),
        (settings.connect_timeout, settings.read_timeout),
    )


# How long msal 1.39 replays a throttled answer (throttled_http_client.RetryAfterParser): Retry-After in whole
# seconds, else 5 s for a confidential client, and never more than an hour.
MSAL_DEFAULT_THROTTLE = 5
MSAL_LONGEST_THROTTLE = 3600


def msal_throttle_seconds(response: Response) -> int:
    value = response.headers.get("Retry-After", "").strip()
    return min(MSAL_LONGEST_THROTTLE, int(value) if value.isascii() and value.isdigit() else MSAL_DEFAULT_THROTTLE)


@dataclass(frozen=True)
class _Answer:
    """What Entra ID last answered a token request: msal replays it from its cache while it is throttled."""

    status: int
    at: float  # time.monotonic()
    throttle_seconds: int


class _MsalHttp(Transport):
    """The transport msal talks through; remembers the last discovery error body, since msal turns it into a bare
    ValueError and we branch on its error_codes, and the last token answer, since msal keeps its headers to itself."""

    def __init__(self, settings: ConnectionSettings) -> None:
        super().__init__(settings)
        self.discovery_error: dict[str, Any] | None = None
        self.posts = 0
        self.last_answer: _Answer | None = None

    def get(self, url: str, *args: Any, **kwargs: Any) -> Response:
        response = super().get(url, *args, **kwargs)
        if response.status_code >= 400:
            self.discovery_error = _json_or_empty(response.content)
        return response

    def post(self, url: str, *args: Any, **kwargs: Any) -> Response:
        response = super().post(url, *args, **kwargs)
        self.posts += 1
        self.last_answer = _Answer(response.status_code, time.monotonic(), msal_throttle_seconds(response))
        return response


def _json_or_empty(content: bytes) -> dict[str, Any]:
    try:
        body = json.loads(content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class _MsalCredential:
    """An msal ConfidentialClientApplication for one credential set (MDE and Graph: v2 endpoint, /.default scope)."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.http = _MsalHttp(settings)
        # msal's HTTP cache for this app alone: discovery answers, and error answers it replays (a 400 for 60 s,
        # a 429 or 5xx for its Retry-After) instead of asking Entra ID again.
        self.http_cache: dict[Any, Any] = {}
        self.scope = scope_for(settings)
        self.lock = threading.Lock()
        self.app: Any = None

    def _build_app(self) -> Any:
        authority = authority_url(self.settings)
        host = (urlsplit(authority).hostname or "").lower()
        try:
            return msal.ConfidentialClientApplication(
                self.settings.client_id.strip(),
                client_credential=msal_client_credential(self.settings),
                authority=authority,
                http_client=self.http,
                # msal asks login.microsoftonline.com whether an unknown host is a genuine authority. An Auth URL
                # typed by an administrator (a private endpoint, the simulator) is trusted as given; msal still
                # requires HTTPS and the tenant's OpenID configuration, and known Microsoft hosts skip the check.
                instance_discovery=None if host in WELL_KNOWN_AUTHORITY_HOSTS else False,
                # A private HTTP cache per app: a 400 replayed for 60 s only ever replays this credential set.
                http_cache=self.http_cache,
            )
        except ValueError:
            raise self._discovery_failure(authority) from None

    def _discovery_failure(self, authority: str) -> TokenFailed:
        body = self.http.discovery_error
        host = urlsplit(authority).netloc
        if body is None:
            return TokenFailed(
                f"The Auth URL {self.settings.auth_url} is not a usable authority.",
                "Enter an https:// sign-in URL such as https://login.microsoftonline.com.",
            )
        code, advice = aadsts_advice(body.get("error_codes") or [90002])
        error = body.get("error") or "no OpenID configuration"
        return TokenFailed(
            f"Entra ID at {host} does not know the tenant {self.settings.tenant_id} (AADSTS{code}, {error}).",
            advice,
            code=code,
        )

    def acquire(self) -> Token:
        with self.lock:
            if self.app is None:
                self.app = self._build_app()
            app = self.app
        posts = self.http.posts
        try:
            result = app.acquire_token_for_client(scopes=[self.scope])
        except msal.exceptions.MsalServiceError as exc:
            raise TokenFailed(
                f"Entra ID at {_sign_in_host(self.settings)} failed while issuing the token ({exc.args[0]}).",
                "The sign-in service had a problem; try again later.",
            ) from None
        except ValueError:
            # Entra ID throttles the client credentials grant with a bare "429 Too Many Requests" and Retry-After,
            # no JSON: msal cannot parse it (nor its replay of it), but it is throttling, not a wrong Auth URL.
            throttled = self._throttled({}, posts)
            if throttled is not None:
                raise throttled from None
            raise BadResponse(
                f"Entra ID at {_sign_in_host(self.settings)} answered the token request with "
                "something that is not JSON.",
                "Check the Auth URL: it must be the Entra ID sign-in host, not the API host.",
            ) from None
        if "access_token" not in result:
            throttled = self._throttled(result, posts)
            if throttled is not None:
                raise throttled
            raise token_failure(self.settings, result)
        expires_at = datetime.now(UTC) + timedelta(seconds=int(result.get("expires_in", 0)))
        return Token(result["access_token"], expires_at, self.scope, result.get("token_source") == "cache")

    def _throttled(self, result: Mapping[str, Any], posts: int) -> Throttled | None:
        """Throttled when Entra ID's last answer was a 429, asked now or replayed by msal (posts unchanged)."""
        answer = self.http.last_answer
        if answer is None or answer.status != 429:
            return None
        replayed = self.http.posts == posts
        left = answer.throttle_seconds - (time.monotonic() - answer.at) if replayed else answer.throttle_seconds
        return entra_throttled(self.settings, result, left, replayed)

    def forget_answers(self) -> None:
        """Ask Entra ID again on the next token request, rather than have msal replay an answer it keeps."""
        self.http_cache.clear()

    def drop(self) -> None:
        """Forget the cached access tokens (after a 401, or before a Test that must see current permissions)."""
        with self.lock:
            app = self.app
        if app is None:
            return
        cache = app.token_cache
        for entry in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
            cache.remove_at(entry)


class _V1Credential:
    """The legacy SIEM API takes only v1 tokens for https://graph.windows.net.

    msal speaks the v2 endpoint only (scopes, not resources), so this is a plain client-credentials POST to
    {authority}/oauth2/token, as Microsoft's SIEM documentation shows, through the same Transport as every other
    call. The token is cached here with msal's refresh margin.
    """

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.transport = Transport(settings)
        self.resource = resource_for(settings)
        self.lock = threading.Lock()
        self.token: Token | None = None

    def acquire(self) -> Token:
        with self.lock:
            if self.token and (self.token.expires_at - datetime.now(UTC)).total_seconds() > REFRESH_MARGIN:
                return Token(self.token.access_token, self.token.expires_at, self.resource, True)
            url = f"{authority_url(self.settings)}/oauth2/token"
            data = {
                "grant_type": "client_credentials",
                "client_id": self.settings.client_id.strip(),
                "resource": self.resource,
            }
            data.update(v1_client_credential(self.settings, url))
            response = self.transport.post(url, data=data, headers={"Accept": "application/json"})
            result = _json_or_empty(response.content)
            if response.status_code == 429:
                raise entra_throttled(self.settings, result, retry_after_seconds(response) or MSAL_DEFAULT_THROTTLE)
            if response.status_code >= 500 and not result:
                raise TokenFailed(
                    f"Entra ID at {_sign_in_host(self.settings)} failed with HTTP {response.status_code} "
                    "while issuing the token.",
                    "The sign-in service had a problem; try again later.",
                )
            if "access_token" not in result:
                raise token_failure(self.settings, result)
            # The v1 endpoint sends expires_in as a string.
            expires_at = datetime.now(UTC) + timedelta(seconds=int(result.get("expires_in") or 3599))
            self.token = Token(result["access_token"], expires_at, self.resource, False)
            return self.token

    def drop(self) -> None:
        with self.lock:
            self.token = None

    def forget_answers(self) -> None:
        """Nothing to forget: this credential keeps no answer but its token."""


def certificate_of(settings: ConnectionSettings) -> CertificateCredential:
    """The settings' certificate credential, read; a TokenFailed (never quoting it) when it does not parse."""
    try:
        return parse_certificate_credential(settings.client_certificate)
    except ValueError as problem:
        raise TokenFailed("The client certificate of this integration cannot be used.", str(problem)) from None


def msal_client_credential(settings: ConnectionSettings) -> str | dict[str, str]:
    """The client secret, or the certificate as msal takes it: with ``public_certificate`` and no ``thumbprint``,
    msal (1.35 and later) names the certificate by its SHA-256 thumbprint (x5t#S256) and signs with PS256, as
    Microsoft's certificate credentials page now documents; it also sends the certificate (x5c)."""
    if not settings.uses_certificate:
        return settings.client_secret
    certificate = certificate_of(settings)
    return {"private_key": certificate.private_key_pem, "public_certificate": certificate.certificate_pem}


# Microsoft's page asks for an assertion valid 5 to 10 minutes; msal makes them for 10.
ASSERTION_LIFETIME = 600


def v1_client_credential(settings: ConnectionSettings, token_url: str) -> dict[str, str]:
    """The form fields that prove the app to the v1 token endpoint: its secret, or a client assertion made as msal
    makes it for the v2 endpoint (msal speaks v2 only), with the v1 token URL as its audience."""
    if not settings.uses_certificate:
        return {"client_secret": settings.client_secret}
    certificate = certificate_of(settings)
    creator = JwtAssertionCreator(
        certificate.private_key_pem,
        algorithm="PS256",
        sha256_thumbprint=certificate.sha256_thumbprint.lower(),
        headers={"x5c": [_der_base64(certificate.certificate_pem)]},
    )
    client_id = settings.client_id.strip()
    assertion = creator.create_normal_assertion(token_url, client_id, client_id, expires_in=ASSERTION_LIFETIME)
    return {
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion.decode("ascii") if isinstance(assertion, bytes) else str(assertion),
    }


def _der_base64(certificate_pem: str) -> str:
    return "".join(line for line in certificate_pem.strip().splitlines() if not line.startswith("-----"))


def credential_used(settings: ConnectionSettings) -> str:
    """Which credential a token was asked with, for the Test: the certificate by its thumbprint's first digits."""
    if settings.uses_certificate:
        try:
            prefix = parse_certificate_credential(settings.client_certificate).thumbprint_prefix
        except ValueError:
            return "the client certificate"
        return f"the client certificate {prefix}…"
    return "the client secret"


def entra_throttled(
    settings: ConnectionSettings, result: Mapping[str, Any], seconds: float, replayed: bool = False
) -> Throttled:
    """Throttled, saying it was Entra ID (not the API) and for how long; ``replayed`` when msal answered from its
    cache without asking."""
    codes = [code for code in result.get("error_codes") or [] if isinstance(code, int)]
    code = f", AADSTS{codes[0]}" if codes else ""
    seconds = max(1, math.ceil(seconds))
    if replayed:
        advice = (
            "This is Entra ID's earlier answer, which the sign-in library keeps until then without asking again; "
            "a Test asks Entra ID at once."
        )
    else:
        advice = "Too many token requests from this app in a short time; it passes by itself."
    return Throttled(
        f"Entra ID throttled this app: retry after {seconds} s (HTTP 429 from {_sign_in_host(settings)}{code}).",
        advice,
        code=429,
        retry_at=datetime.now(UTC) + timedelta(seconds=seconds),
    )


def token_failure(settings: ConnectionSettings, result: Mapping[str, Any]) -> TokenFailed:
    """A TokenFailed from an Entra error body: advice chosen by error_codes, never by the description text."""
    codes = [code for code in result.get("error_codes") or [] if isinstance(code, int)]
    code, advice = aadsts_advice(codes)
    error = result.get("error") or "no token in the answer"
    label = f"AADSTS{code}, {error}" if code else error
    host = _sign_in_host(settings)
    if not advice:
        description = redact(
            str(result.get("error_description") or ""), settings.client_secret, settings.client_certificate
        )
        advice = description.split("\r\n")[0].split(" Trace ID")[0][:300]
    return TokenFailed(f"Entra ID at {host} refused to issue a token ({label}).", advice, code=code)


class _Credential(Protocol):
    def acquire(self) -> Token: ...

    def drop(self) -> None: ...

    def forget_answers(self) -> None: ...


_credentials: Kept[Hashable, _Credential] = PROCESS.keep(256)


def _credential_for(settings: ConnectionSettings) -> _Credential:
    def make() -> _Credential:
        return _V1Credential(settings) if settings.flavour == presets.SIEM else _MsalCredential(settings)

    return _credentials.get(_credential_key(settings), make)


def acquire_token(settings: ConnectionSettings, fresh: bool = False) -> Token:
    """A token for this integration's API, from the cache while it has more than five minutes left.

    fresh=True drops the cached token and any answer msal keeps, and asks Entra ID: the Test uses it so that a
    permission granted a minute ago shows, and a throttle that has ended no longer does.
    """
    credential = _credential_for(settings)
    if fresh:
        credential.drop()
        credential.forget_answers()
    started = time.monotonic()
    token = credential.acquire()
    if not token.from_cache:
        logger.info(
            "Got a token for %s (client %s) in %.0f ms",
            token.audience,
            settings.client_id,
            (time.monotonic() - started) * 1000,
        )
    return token


def drop_token(settings: ConnectionSettings) -> None:
    _credential_for(settings).drop()


class TokenSource:
    """What client.ApiClient asks for bearer tokens."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings

    def token(self) -> str:
        return acquire_token(self.settings).access_token

    def drop(self) -> None:
        drop_token(self.settings)


def api_client(settings: ConnectionSettings, call_budget: budget.Budget | None = None) -> ApiClient:
    """The integration's API client: its token source (msal's app is kept per credential set), its route and budget
    (``call_budget`` instead, for calls with a budget of their own), and one HTTP session for every call it makes."""
    return ApiClient(settings, TokenSource(settings), call_budget=call_budget)
