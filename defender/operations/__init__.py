"""The use cases: what pressing Test and Get alerts do, and what a remote node's answer means.

Views, management commands and the remote node API call these and nothing lower. Whether work runs here or on an
integration's remote node is decided in ``placement`` only.
"""
