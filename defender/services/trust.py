"""Which certificates this process trusts, decided once for the API calls, the Test and the proxy Test.

The system store is the one requests would use (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE or SSL_CERT_FILE, else OpenSSL's,
else certifi's); an integration's CA and its proxy's CA are added to it in a private file.
"""

import hashlib
import os
import ssl
import tempfile
from typing import Literal

import certifi

from defender.services.connection import ProxySettings, Reach
from defender.services.errors import TlsFailed
from defender.services.process import PROCESS, Kept

# What requests takes as ``verify=``: a CA bundle file, or False when verification is off.
Verify = str | Literal[False]

# Each combined bundle, by the hash of what it holds: written once per process, then reused.
_bundles: Kept[str, str] = PROCESS.keep(256)


def system_bundle() -> str:
    """The trust store requests would use: REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE or SSL_CERT_FILE, else OpenSSL's, else
    certifi's."""
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        path = os.environ.get(variable)
        if path and os.path.isfile(path):
            return path
    openssl_default = ssl.get_default_verify_paths().cafile
    if openssl_default and os.path.isfile(openssl_default):
        return openssl_default
    return certifi.where()


def trust_for(settings: Reach) -> Verify:
    """The ``verify=`` value for these settings: False when verification is off; the system bundle when no CA is
    configured; otherwise a private file holding the system bundle plus the integration's and the proxy's CA PEMs."""
    if not settings.verify_tls:
        return False
    return bundle(settings.ca_certificate, settings.proxy.ca_certificate if settings.proxy else "")


def trust_for_proxy(proxy: ProxySettings) -> Verify:
    """What a proxy's own certificate is checked against: the system bundle plus the proxy rule's CA."""
    return bundle(proxy.ca_certificate)


def bundle(*pems: str) -> str:
    """The system bundle with these CA PEMs added (blank ones ignored)."""
    extra = [pem.strip() for pem in pems if pem.strip()]
    base = system_bundle()
    if not extra:
        return base
    digest = hashlib.sha256("\0".join([base, *extra]).encode()).hexdigest()

    def write() -> str:
        return _write_bundle(digest, base, extra)

    path = _bundles.get(digest, write)
    if not os.path.exists(path):  # a cleaner of temporary files took it
        _bundles.drop(digest)
        path = _bundles.get(digest, write)
    return path


def _write_bundle(digest: str, base: str, extra: list[str]) -> str:
    with open(base, encoding="utf-8", errors="replace") as system_file:
        content = system_file.read().rstrip() + "\n" + "\n".join(extra) + "\n"
    directory = tempfile.mkdtemp(prefix="defender-trust-")  # mode 0700
    path = os.path.join(directory, f"{digest}.pem")
    fd, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")  # mode 0600
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
    os.replace(temporary, path)
    return path


def tls_context(verify: Verify) -> ssl.SSLContext:
    """An SSL context like the API calls use: the same bundle, or no verification when it is off."""
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=verify)


def certificate_failure(host: str, verify_code: int, verify_message: str, issuer: str = "") -> TlsFailed:
    """A TlsFailed naming whose certificate failed and why, from OpenSSL's verify code."""
    by = f" (issuer: {issuer})" if issuer else ""
    fix = (
        "Set the CA certificate in Advanced options (or the proxy's CA in the proxy rule, for a TLS-inspecting "
        "proxy), or fix the site's trust store."
    )
    if verify_code in (2, 19, 20):  # unable to get issuer certificate / self-signed in chain / no local issuer
        return TlsFailed(f"The certificate for {host} is signed by an unknown CA{by}.", fix, code=verify_code)
    if verify_code == 18:
        return TlsFailed(f"The certificate for {host} is self-signed{by}.", fix, code=verify_code)
    if verify_code == 10:
        return TlsFailed(
            f"The certificate for {host} has expired{by}.",
            "The server must renew it; check the site's clock too.",
            code=verify_code,
        )
    if verify_code == 9:
        return TlsFailed(
            f"The certificate for {host} is not valid yet{by}.", "Check the site's clock.", code=verify_code
        )
    if verify_code in (62, 63, 64):  # host name, e-mail or IP address mismatch: another CA would not help
        return TlsFailed(
            f"The certificate presented by {host} is not valid for that name ({verify_message.rstrip('.')}){by}.",
            "Check the host name: it must match a name in the server's certificate.",
            code=verify_code,
        )
    return TlsFailed(
        f"The certificate for {host} failed verification: {verify_message.rstrip('.')}{by}.", fix, code=verify_code
    )
