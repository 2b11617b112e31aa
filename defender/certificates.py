"""PEM certificates compared and stored by what they hold, not by how they were pasted.

A browser posts a textarea with CRLF line endings, a file may carry comments between certificates, and the same CA
can be pasted with or without a trailing newline: none of that changes which certificates are trusted.
"""

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding


def _text(value: str | None) -> str:
    return (value or "").replace("\r\n", "\n").replace("\r", "\n").strip()


def parsed_certificates(value: str | None) -> list[x509.Certificate] | None:
    """The certificates in the text, or None when it does not parse (or holds none)."""
    text = _text(value)
    if "-----BEGIN CERTIFICATE-----" not in text:
        return None
    try:
        return x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        return None


def normalise_pem(value: str | None) -> str:
    """The canonical PEM of the certificates in the text; text that does not parse comes back trimmed, with LF."""
    text = _text(value)
    certificates = parsed_certificates(text)
    if certificates is None:
        return text
    return "".join(certificate.public_bytes(Encoding.PEM).decode("ascii") for certificate in certificates)


def certificate_digests(value: str | None) -> list[str]:
    """SHA-256 of each certificate's DER, sorted: equal for the same set of certificates however they were pasted."""
    text = _text(value)
    if not text:
        return []
    certificates = parsed_certificates(text)
    if certificates is None:
        return ["text:" + hashlib.sha256(text.encode()).hexdigest()]
    return sorted({hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest() for certificate in certificates})
