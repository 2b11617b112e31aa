"""The registry of integration kinds. Defender ATP is the first entry; a new kind is one more line here."""

from dataclasses import dataclass


@dataclass(frozen=True)
class IntegrationKind:
    key: str
    label: str
    vendor: str


DEFENDER_ATP = IntegrationKind(key="defender_atp", label="Defender ATP", vendor="Microsoft")

KINDS = {kind.key: kind for kind in [DEFENDER_ATP]}
KIND_CHOICES = [(kind.key, kind.label) for kind in KINDS.values()]
