"""Prometheus metrics: the nodes' CloudWatch metrics (read by a sampler thread) and the service's own."""

from controlplane.metrics.prometheus import Metrics, TimedRoutes, install
from controlplane.metrics.sampler import NodeSampler

__all__ = ["Metrics", "NodeSampler", "TimedRoutes", "install"]
