"""Who may call the service: SigV4 verification of Query API requests against a credentials
file (sigv4.py, keys.py), IAM policies from a policy file (policy.py, resources.py), both put
together by access.py; and the token in front of the JSON API and the dashboard (guard.py).
Everything here is off unless settings turn it on (README: Strict profile)."""
