"""A certificate credential: the PEM of an app's private key and its certificate, as one text.

Entra ID takes a client assertion (a JWT signed with the key, naming the certificate by its thumbprint) instead of a
client secret. What a page may show of it is the certificate's subject, thumbprints and validity, never the key.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, load_pem_private_key

KEY_MARKERS = ("-----BEGIN PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----")
ENCRYPTED_KEY_MARKER = "-----BEGIN ENCRYPTED PRIVATE KEY-----"
CERTIFICATE_MARKER = "-----BEGIN CERTIFICATE-----"


class CertificateProblem(ValueError):
    """The text is not a usable certificate credential; the message says why, and never quotes the key."""


@dataclass(frozen=True)
class CertificateCredential:
    private_key_pem: str  # PKCS#8, unencrypted: what msal signs with
    certificate_pem: str
    subject: str
    sha1_thumbprint: str  # hex, upper case, as the Azure portal shows it
    sha256_thumbprint: str
    not_before: datetime
    not_after: datetime

    def __repr__(self) -> str:
        return f"<CertificateCredential {self.subject} {self.sha1_thumbprint}>"

    @property
    def thumbprint_prefix(self) -> str:
        return self.sha1_thumbprint[:8]

    def days_left(self, now: datetime | None = None) -> int:
        """Whole days until the certificate expires (negative once it has)."""
        return (self.not_after - (now or datetime.now(UTC))).days


def _text(value: str) -> str:
    return value.replace("\r\n", "\n").replace("\r", "\n").strip()


def _key_block(text: str) -> str:
    for marker in KEY_MARKERS:
        if marker in text:
            end = marker.replace("BEGIN", "END")
            start = text.index(marker)
            return text[start : text.index(end, start) + len(end)]
    raise CertificateProblem("No private key was found.")


def parse_certificate_credential(value: str) -> CertificateCredential:
    """The key and certificate in a PEM text, checked to belong together; raises CertificateProblem."""
    text = _text(value or "")
    if ENCRYPTED_KEY_MARKER in text:
        raise CertificateProblem(
            "The private key is encrypted with a passphrase: export it without one (openssl pkey -in key.pem); "
            "it is stored encrypted here."
        )
    if not any(marker in text for marker in KEY_MARKERS):
        raise CertificateProblem("No private key was found: paste the PEM of the private key and its certificate.")
    if CERTIFICATE_MARKER not in text:
        raise CertificateProblem("No certificate was found: add the certificate's PEM after the private key.")
    try:
        key = load_pem_private_key(_key_block(text).encode(), password=None)
    except (ValueError, TypeError):
        raise CertificateProblem("The private key could not be read: paste it as PEM, as exported.") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CertificateProblem("The private key is not an RSA key: Entra ID takes RSA certificates.")
    try:
        certificates = x509.load_pem_x509_certificates(text[text.index(CERTIFICATE_MARKER) :].encode())
    except ValueError:
        raise CertificateProblem("The certificate could not be read: paste it as PEM, as exported.") from None
    public_numbers = key.public_key().public_numbers()
    matching = []
    for certificate in certificates:
        public_key = certificate.public_key()
        if isinstance(public_key, rsa.RSAPublicKey) and public_key.public_numbers() == public_numbers:
            matching.append(certificate)
    if not matching:
        raise CertificateProblem(
            "The certificate does not belong to the private key: paste the key and the certificate made with it."
        )
    certificate = matching[0]
    return CertificateCredential(
        private_key_pem=key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode("ascii"),
        certificate_pem=certificate.public_bytes(Encoding.PEM).decode("ascii"),
        subject=certificate.subject.rfc4514_string() or "(no subject)",
        # SHA-1 names the certificate (the portal's "Thumbprint", the x5t header); it checks nothing.
        sha1_thumbprint=certificate.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303
        sha256_thumbprint=certificate.fingerprint(hashes.SHA256()).hex().upper(),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
    )
