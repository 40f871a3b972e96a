"""`elasticache-local serve | status | reset | fault | clock`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import urllib.error
import urllib.request
from pathlib import Path

from controlplane.settings import Settings


def _serve(args: argparse.Namespace) -> int:
    from controlplane.serve import serve

    overrides: dict[str, object] = {}
    for name in ("host", "port", "data_dir", "runtime", "log_level", "profile", "credentials_file", "policy_file"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    if args.allow_remote:
        overrides["allow_remote"] = True
    settings = Settings(**overrides)  # type: ignore[arg-type]
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(settings)


def _endpoint(args: argparse.Namespace) -> str:
    if getattr(args, "endpoint", None):
        return str(args.endpoint).rstrip("/")
    settings = Settings()
    host = getattr(args, "host", None) or settings.host
    return f"http://{host}:{getattr(args, 'port', None) or settings.port}"


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, object] | None = None,
          timeout: float | None = 60, raw: bool = False) -> int:
    """Call the running service's JSON API and print its answer (`raw`: as it came, e.g. a PEM)."""
    endpoint = _endpoint(args)
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    token = Settings().admin_token  # the strict profile's JSON API needs it (ELASTICACHE_LOCAL_ADMIN_TOKEN)
    if token is not None:
        headers["Authorization"] = f"Bearer {token.get_secret_value()}"
    req = urllib.request.Request(f"{endpoint}{path}", method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer = resp.read()
            if raw:
                sys.stdout.write(answer.decode())
            else:
                print(json.dumps(json.loads(answer), indent=2))
            return 0
    except urllib.error.HTTPError as exc:
        print(f"refused: {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"elasticache-local is not answering at {endpoint}: {exc}", file=sys.stderr)
        return 1


def _clock(args: argparse.Namespace) -> int:
    if args.clock_command == "advance":
        # No client timeout: the service bounds each stop (ADVANCE_STEP_TIMEOUT), and a long
        # advance through many windows takes as long as their backups do.
        return _call(args, "POST", "/api/v1/clock/advance", {"seconds": args.seconds}, timeout=None)
    return _call(args, "GET", "/api/v1/clock")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="elasticache-local", description="AWS ElastiCache, locally, with real nodes.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the service (Ctrl-C stops it; nodes keep running)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--data-dir", type=Path)
    serve.add_argument("--runtime", choices=["process", "docker"])
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--allow-remote", action="store_true",
                       help="listen on an address other machines can reach (e.g. --host 0.0.0.0)")
    serve.add_argument("--profile", choices=["default", "strict"],
                       help="strict: SigV4 signatures checked, JSON API and dashboard behind the admin token")
    serve.add_argument("--credentials-file", type=Path, help="access keys to verify signatures with (JSON or INI)")
    serve.add_argument("--policy-file", type=Path, help="IAM policies every Query API request is checked against")
    for name, help_text in (("status", "show the running service's health"),
                            ("reset", "delete every resource and stop every node"),
                            ("ca", "print the CA certificate nodes' TLS certificates chain to (ca > ca.pem)")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--host")
        p.add_argument("--port", type=int)
    fault = sub.add_parser("fault", help="inject a fault: kill/stop/pause/resume a node, interrupt an AZ")
    fault.add_argument("--host")
    fault.add_argument("--port", type=int)
    fault.add_argument("action", choices=["kill", "stop", "pause", "resume", "az", "az-restore"])
    fault.add_argument("target", help="cache cluster id (node actions) or availability zone (az actions)")
    fault.add_argument("--node", default="0001")
    fault.add_argument("--seconds", type=float, default=60.0)
    fault.add_argument("--account", default="123456789012")
    fault.add_argument("--region", default="us-east-1")
    clock = sub.add_parser("clock", help="show the service clock, or advance it so windows fire now")
    clock.add_argument("--endpoint", help="the running service (default http://127.0.0.1:8379, or the settings)")
    clock_sub = clock.add_subparsers(dest="clock_command")
    clock_advance = clock_sub.add_parser(
        "advance", help="move the clock SECONDS forward, stopping at every maintenance and snapshot window start")
    clock_advance.add_argument("seconds", type=float, help="how far, in seconds (more than 0, at most 400 days)")
    clock_advance.add_argument("--endpoint", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "clock":
        return _clock(args)
    if args.command == "fault":
        if args.action == "az":
            return _call(args, "POST", "/api/v1/faults/availability-zone",
                         {"availability_zone": args.target, "seconds": args.seconds})
        if args.action == "az-restore":
            return _call(args, "DELETE", f"/api/v1/faults/availability-zone/{args.target}")
        return _call(args, "POST", "/api/v1/faults/node", {"cluster_id": args.target, "node_id": args.node,
                                                           "action": args.action, "account": args.account,
                                                           "region": args.region})
    if args.command == "status":
        return _call(args, "GET", "/api/v1/health")
    if args.command == "ca":
        return _call(args, "GET", "/api/v1/ca.pem", raw=True)
    return _call(args, "POST", "/api/v1/reset")


if __name__ == "__main__":
    sys.exit(main())
