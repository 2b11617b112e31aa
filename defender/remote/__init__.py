"""Remote integrations: nodes beyond a network boundary pull the jobs of their integrations over HTTPS.

- ``wire``: what travels between site and node (settings out, Test steps and alerts back), as JSON.
- ``tokens``: node access tokens (only their hash is stored).
- ``jobs``: the site's job queue: enqueue, atomic claim, lease, expiry, results.
- ``results``: what the site records from an answer (the same records as a local Test or Get alerts).
- ``status``: whether a node is online.
- ``node_api``: the HTTPS endpoints an agent calls.
- ``agent``: the loop that runs on a node (no database needed).
"""
