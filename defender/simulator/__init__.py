"""A built-in simulator of Entra ID and the Microsoft Defender for Endpoint, Graph and legacy SIEM alert APIs."""

from .network import closed_port, silent_listener
from .seed import AppCredential
from .server import RequestRecord, Simulator

__all__ = ["AppCredential", "RequestRecord", "Simulator", "closed_port", "silent_listener"]
