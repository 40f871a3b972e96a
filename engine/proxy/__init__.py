"""Userspace endpoints served by the control plane: the memcached configuration endpoint
(auto discovery) and L4 forwarders, all on one `ProxyHub` event loop."""

from engine.proxy.hub import BindError, Member, ProxyError, ProxyHub

__all__ = ["BindError", "Member", "ProxyError", "ProxyHub"]
