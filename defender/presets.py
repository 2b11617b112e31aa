"""Host presets: where each API flavour lives in each cloud, as data.

Sources: Microsoft's Defender for Endpoint, legacy SIEM and Graph documentation, summarised per cloud in
docs/microsoft-api.md. The form lists the common regions first and the rest under "More".
"""

from dataclasses import asdict, dataclass
from typing import Any

from defender.enums import ApiFlavour, choices

# The flavours by their short names, which the services and the tests use.
MDE, GRAPH, SIEM = ApiFlavour.MDE, ApiFlavour.GRAPH, ApiFlavour.SIEM

API_FLAVOURS = choices(ApiFlavour)

# The clouds a tenant can live in. Each has its own portal; GCC High and DoD share their API and sign-in hosts, so the
# preset says which one it is (services.alerts.PORTALS).
COMMERCIAL, GCC, GCC_HIGH, DOD = "commercial", "gcc", "gcc-high", "dod"
CLOUDS = [(COMMERCIAL, "Commercial"), (GCC, "US GCC"), (GCC_HIGH, "US GCC High"), (DOD, "US DoD")]

PUBLIC_LOGIN = "https://login.microsoftonline.com"
US_GOV_LOGIN = "https://login.microsoftonline.us"

# The application permissions each flavour needs (the token's `roles` claim must hold them).
REQUIRED_ROLES: dict[str, tuple[str, ...]] = {
    MDE: ("Alert.Read.All", "Machine.Read.All"),
    GRAPH: ("SecurityAlert.Read.All",),
    # The SIEM exporter predates app roles in tokens; it only needs the Azure AD Graph resource token.
    SIEM: (),
}
# The role advanced hunting needs (detection outcomes' telemetry checks); not needed for alerts.
HUNTING_ROLES: dict[str, str] = {MDE: "AdvancedQuery.Read.All", GRAPH: "ThreatHunting.Read.All"}

# "Current by default": the Defender for Endpoint API is versioned under /api/{version}; Graph under /{version}.
DEFAULT_API_VERSION: dict[str, str] = {MDE: "v1.0", GRAPH: "v1.0", SIEM: ""}
API_VERSIONS: dict[str, tuple[str, ...]] = {MDE: ("v1.0", ""), GRAPH: ("v1.0", "beta"), SIEM: ("",)}


@dataclass(frozen=True)
class Preset:
    flavour: str
    key: str
    label: str
    host: str
    auth_url: str
    resource: str
    common: bool  # shown first; the others sit under "More"
    cloud: str = COMMERCIAL


# One row per preset, kept as a table for reading across.
# fmt: off
PRESETS = [
    # Defender for Endpoint API: the base host and the geo hosts Microsoft recommends for performance.
    Preset(MDE, "global", "Global", "api.security.microsoft.com", PUBLIC_LOGIN, "https://api.securitycenter.microsoft.com", True),
    Preset(MDE, "us", "US", "us.api.security.microsoft.com", PUBLIC_LOGIN, "https://api.securitycenter.microsoft.com", True),
    Preset(MDE, "eu", "EU", "eu.api.security.microsoft.com", PUBLIC_LOGIN, "https://api.securitycenter.microsoft.com", True),
    Preset(MDE, "uk", "UK", "uk.api.security.microsoft.com", PUBLIC_LOGIN, "https://api.securitycenter.microsoft.com", True),
    Preset(MDE, "au", "Australia", "au.api.security.microsoft.com", PUBLIC_LOGIN, "https://api.securitycenter.microsoft.com", False),
    Preset(MDE, "swa", "Switzerland", "swa.api.security.microsoft.com", PUBLIC_LOGIN, "https://api.securitycenter.microsoft.com", False),
    Preset(MDE, "ina", "India", "ina.api.security.microsoft.com", PUBLIC_LOGIN, "https://api.securitycenter.microsoft.com", False),
    Preset(MDE, "aea", "UAE", "aea.api.security.microsoft.com", PUBLIC_LOGIN, "https://api.securitycenter.microsoft.com", False),
    Preset(MDE, "legacy-global", "Global (legacy host)", "api.securitycenter.microsoft.com", PUBLIC_LOGIN, "https://api.securitycenter.microsoft.com", False),
    Preset(MDE, "legacy-us", "US (legacy host)", "api-us.securitycenter.microsoft.com", PUBLIC_LOGIN, "https://api.securitycenter.microsoft.com", False),
    Preset(MDE, "legacy-eu", "EU (legacy host)", "api-eu.securitycenter.microsoft.com", PUBLIC_LOGIN, "https://api.securitycenter.microsoft.com", False),
    Preset(MDE, "legacy-uk", "UK (legacy host)", "api-uk.securitycenter.microsoft.com", PUBLIC_LOGIN, "https://api.securitycenter.microsoft.com", False),
    Preset(MDE, "gcc", "US GCC", "api-gcc.securitycenter.microsoft.us", PUBLIC_LOGIN, "https://api-gcc.securitycenter.microsoft.us", False, GCC),
    Preset(MDE, "gcc-high", "US GCC High", "api-gov.securitycenter.microsoft.us", US_GOV_LOGIN, "https://api-gov.securitycenter.microsoft.us", False, GCC_HIGH),
    Preset(MDE, "dod", "US DoD", "api-gov.securitycenter.microsoft.us", US_GOV_LOGIN, "https://api-gov.securitycenter.microsoft.us", False, DOD),
    # Microsoft Graph security API and its national clouds.
    Preset(GRAPH, "global", "Global", "graph.microsoft.com", PUBLIC_LOGIN, "https://graph.microsoft.com", True),
    Preset(GRAPH, "gcc", "US GCC", "graph.microsoft.com", PUBLIC_LOGIN, "https://graph.microsoft.com", False, GCC),
    Preset(GRAPH, "gcc-high", "US GCC High", "graph.microsoft.us", US_GOV_LOGIN, "https://graph.microsoft.us", False, GCC_HIGH),
    Preset(GRAPH, "dod", "US DoD", "dod-graph.microsoft.us", US_GOV_LOGIN, "https://dod-graph.microsoft.us", False, DOD),
    # Legacy SIEM alert exporters (deprecated by Microsoft; v1 tokens for the Azure AD Graph resource).
    Preset(SIEM, "us", "US", "wdatp-alertexporter-us.windows.com", PUBLIC_LOGIN, "https://graph.windows.net", True),
    Preset(SIEM, "eu", "EU", "wdatp-alertexporter-eu.windows.com", PUBLIC_LOGIN, "https://graph.windows.net", True),
    Preset(SIEM, "uk", "UK", "wdatp-alertexporter-uk.windows.com", PUBLIC_LOGIN, "https://graph.windows.net", True),
    Preset(SIEM, "gcc", "US GCC", "wdatp-alertexporter-us.gcc.securitycenter.windows.us", PUBLIC_LOGIN, "https://graph.windows.net", False, GCC),
    Preset(SIEM, "gcc-high", "US GCC High / DoD", "wdatp-alertexporter-us.securitycenter.windows.us", US_GOV_LOGIN, "https://graph.windows.net", False, GCC_HIGH),
]
# fmt: on

DEFAULT_PRESET: dict[str, str] = {MDE: "global", GRAPH: "global", SIEM: "us"}


def presets_for(flavour: str) -> list[Preset]:
    return [preset for preset in PRESETS if preset.flavour == flavour]


def get_preset(flavour: str, key: str) -> Preset:
    for preset in PRESETS:
        if preset.flavour == flavour and preset.key == key:
            return preset
    raise KeyError(f"no preset {key!r} for {flavour!r}")


def default_preset(flavour: str) -> Preset:
    return get_preset(flavour, DEFAULT_PRESET[flavour])


def preset_data() -> dict[str, dict[str, Any]]:
    """Per API flavour: its presets, defaults and required permissions, for the preset buttons and the page script."""
    # Imported here: the services' error advice reads this module's tables.
    from defender.services.errors import permission_advice

    return {
        flavour: {
            "label": label,
            "api_version": DEFAULT_API_VERSION[flavour],
            "api_versions": list(API_VERSIONS[flavour]),
            "default": asdict(default_preset(flavour)),
            "presets": [asdict(preset) for preset in presets_for(flavour)],
            "roles": list(REQUIRED_ROLES[flavour]),
            "permission_advice": permission_advice(flavour),
        }
        for flavour, label in API_FLAVOURS
    }
