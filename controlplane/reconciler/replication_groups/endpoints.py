"""A group's primary and reader endpoints: floating addresses held by the member nodes (bound as
extra addresses at runtime), or, where an address cannot move (engines before 7.0, the ports
addressing), TCP forwarders in this process's hub re-pointed at the right node."""

from __future__ import annotations

from functools import partial

from controlplane.catalog import version_key
from controlplane.reconciler.errors import TemporaryError
from controlplane.reconciler.infra import endpoint_name
from controlplane.reconciler.replication_groups.context import GroupContext, member, replaced
from controlplane.state.records import CacheCluster, ReplicationGroup, ReplicationGroupStatus
from engine import ProxyError, RuntimeError_

# A proxied endpoint whose target is not known (a re-point failed half way): the next pass sets it.
UNKNOWN = ("", -1)


class Endpoints:
    def __init__(self, ctx: GroupContext) -> None:
        self._ctx = ctx
        # Proxied endpoint -> its target, as this process's hub has it. Not status: the hub lives
        # and dies with the process, and so does this; the first pass after a start adds every
        # forwarder again with the target it should have (add_endpoints).
        self._forwarders: dict[str, tuple[str, int] | None] = {}

    # ---- allocation and forwarders ------------------------------------------------------

    def add_endpoints(self, rg: ReplicationGroup, members: list[CacheCluster], version: str) -> ReplicationGroup:
        """An address per endpoint, allocated once; proxied endpoints served every pass."""
        infra = self._ctx.infra
        if rg.status.primary_host is None or rg.status.reader_host is None:
            # Floating addresses need an address per endpoint and `CONFIG SET bind` (7.0+).
            proxied = infra.endpoint_addresses.mode != "loopback" or version_key(version) < (7,)
            with infra.alloc_lock:
                primary = infra.allocate(infra.endpoint_addresses, rg.spec.port, self._ctx.store)
                rg = self._ctx.write(rg, partial(_set_endpoint, which="primary", address=primary, proxied=proxied))
                reader = infra.allocate(infra.endpoint_addresses, rg.spec.port, self._ctx.store)
                rg = self._ctx.write(rg, partial(_set_endpoint, which="reader", address=reader, proxied=proxied))
        if rg.status.proxied:
            for which in ("primary", "reader"):
                name = self._forwarder(rg, which)
                host = rg.status.primary_host if which == "primary" else rg.status.reader_host
                port = rg.status.primary_port if which == "primary" else rg.status.reader_port
                assert host is not None and port is not None
                holder = rg.status.primary if which == "primary" else rg.status.reader_on
                try:
                    # Every pass, with the target it should have: adding is idempotent, and it
                    # brings back a forwarder that died (a HAProxy killed from outside).
                    infra.hub.add_tcp_forwarder(name, host, port, _target(members, holder))
                except (OSError, ProxyError) as exc:
                    raise TemporaryError(f"endpoint {host}:{port}: {exc}", delay=0.5) from exc
                self._forwarders.setdefault(name, None)
        return rg

    def remove_endpoints(self, rg: ReplicationGroup) -> None:
        for which in ("primary", "reader"):
            name = self._forwarder(rg, which)
            self._forwarders.pop(name, None)
            if rg.status.proxied:  # unknown names are ignored: whatever this process knows of it
                self._ctx.infra.hub.remove(name)

    def point(self, rg: ReplicationGroup, which: str, target: CacheCluster | None,
              drop_existing: bool = False) -> None:
        """Proxied endpoints: send new connections of `which` to the member's node."""
        name = self._forwarder(rg, which)
        address = _target([target] if target else [], target.id if target else None)
        if self._forwarders.get(name, UNKNOWN) != address or drop_existing:
            try:
                self._ctx.infra.hub.set_target(name, address, drop_existing=drop_existing)
            except ProxyError as exc:
                # Still a known endpoint (a group delete removes it); where it points is not known.
                self._forwarders[name] = UNKNOWN
                raise TemporaryError(f"endpoint {name}: {exc}", delay=0.2) from exc
            self._forwarders[name] = address

    def _forwarder(self, rg: ReplicationGroup, which: str) -> str:
        return endpoint_name(rg.account, rg.region, rg.id, which)

    # ---- floating addresses -------------------------------------------------------------

    def wanted(self, rg: ReplicationGroup, member_id: str) -> list[str]:
        """The floating addresses a member's node should hold (none when endpoints are proxied)."""
        if rg.status.proxied:
            return []
        extra = []
        if member_id == rg.status.primary and rg.status.primary_host:
            extra.append(rg.status.primary_host)
        if member_id == rg.status.reader_on and rg.status.reader_host:
            extra.append(rg.status.reader_host)
        return extra

    def place(self, rg: ReplicationGroup,
              members: list[CacheCluster]) -> tuple[ReplicationGroup, list[CacheCluster]]:
        """The primary address on the primary; the reader address on one healthy replica (the
        primary when there is none). Addresses are dropped from old holders before they are
        added to new ones: one address, one listener."""
        ctx = self._ctx
        healthy = [m.id for m in members if m.id != rg.status.primary and m.status.nodes
                   and m.status.nodes[0].status == "available" and not ctx.health.is_down(ctx.name(rg, m.id))]
        reader = rg.status.reader_on if rg.status.reader_on in healthy else (
            healthy[0] if healthy else rg.status.primary)
        if reader != rg.status.reader_on:
            rg = ctx.write(rg, lambda s: setattr(s, "reader_on", reader))
        if rg.status.proxied:
            self.point(rg, "primary", member(members, rg.status.primary))
            self.point(rg, "reader", member(members, rg.status.reader_on))
            return rg, members
        wanted = {m.id: self.wanted(rg, m.id) for m in members}
        # First every release, then every claim.
        for phase in ("release", "claim"):
            for m in list(members):
                extra = wanted[m.id]
                current = m.status.nodes[0].addresses if m.status.nodes else None
                if current == extra:
                    continue
                releasing = current is None or not set(current) <= set(extra)
                if (phase == "release") != releasing:
                    continue
                target = [a for a in (current or []) if a in extra] if phase == "release" else extra
                try:
                    ctx.infra.runtime.set_addresses(ctx.name(rg, m.id), target)
                except RuntimeError_ as exc:
                    if ctx.health.is_down(ctx.name(rg, m.id)):
                        continue  # a dead node holds nothing; it gets its addresses when it restarts
                    raise TemporaryError(str(exc), delay=0.1) from exc
                members = replaced(members, ctx.set_member_addresses(m, target))
        return rg, members

    def claim_primary(self, rg: ReplicationGroup, new: CacheCluster, drop_existing: bool = True) -> None:
        """Move the primary endpoint to `new` (a failover's repoint, a switchover). Its record is
        written after the address moved: clients reconnect first."""
        if rg.status.proxied:
            self.point(rg, "primary", new, drop_existing=drop_existing)
            return
        runtime, name = self._ctx.infra.runtime, self._ctx.name(rg, new.id)
        address = [rg.status.primary_host or ""]
        if _holds(new):  # e.g. the reader address: dropped first, then the primary's is taken
            runtime.set_addresses(name, [])
        runtime.set_addresses(name, address)
        self._ctx.set_member_addresses(new, address)

    def release(self, rg: ReplicationGroup, old: CacheCluster) -> None:
        """The member's node drops the floating addresses it is known to hold."""
        if not rg.status.proxied and _holds(old):
            self._ctx.infra.runtime.set_addresses(self._ctx.name(rg, old.id), [])
            self._ctx.set_member_addresses(old, [])


def _holds(m: CacheCluster) -> bool:
    return bool(m.status.nodes and m.status.nodes[0].addresses)


def _target(members: list[CacheCluster], member_id: str | None) -> tuple[str, int] | None:
    m = member(members, member_id)
    if m is not None and m.status.nodes:
        return m.status.nodes[0].host, m.status.nodes[0].port
    return None


def _set_endpoint(status: ReplicationGroupStatus, which: str, address: tuple[str, int], proxied: bool) -> None:
    status.proxied = proxied
    if which == "primary":
        status.primary_host, status.primary_port = address
    else:
        status.reader_host, status.reader_port = address
