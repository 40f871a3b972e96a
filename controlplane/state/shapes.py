"""Records -> API shapes (dicts keyed by the model's member names). One place, explicit code.

Member names here are checked against the model by a unit test that walks every key we emit.
"""

from __future__ import annotations

from typing import Any

from controlplane.catalog import aws_release, family_of
from controlplane.state import security
from controlplane.state.arns import arn
from controlplane.state.records import CacheCluster, Event, ReplicationGroup, Tag
from controlplane.state.snapshots import Snapshot
from controlplane.state.subnet_groups import DEFAULT_SUBNET_GROUP, vpc_id


def cache_cluster(rec: CacheCluster, show_nodes: bool) -> dict[str, Any]:
    spec, status = rec.spec, rec.status
    target = rec.target()  # the spec with what the maintenance window applied of its pending changes
    out: dict[str, Any] = {
        "CacheClusterId": rec.id,
        "ClientDownloadLandingPage": "https://console.aws.amazon.com/elasticache/home#client-download:",
        "CacheNodeType": target.node_type,
        "Engine": spec.engine,
        # AWS's release of the line asked for, from the create response on (the binary the nodes
        # really run is in the events, the JSON API and the dashboard).
        "EngineVersion": aws_release(spec.engine, target.engine_version),
        "CacheClusterStatus": rec.api_status(),
        "NumCacheNodes": len(status.nodes) if status.announced_available else target.num_nodes,
        "PreferredMaintenanceWindow": spec.maintenance_window,
        "PendingModifiedValues": _pending(rec),
        "CacheSecurityGroups": [{"CacheSecurityGroupName": n, "Status": "active"}
                                for n in spec.security_group_names],
        "CacheParameterGroup": _parameter_group(rec),
        "AutoMinorVersionUpgrade": spec.auto_minor_version_upgrade,
        "SecurityGroups": [{"SecurityGroupId": g, "Status": "active"} for g in spec.security_group_ids],
        **security.shown(spec.security, status.security_applied),
        "AtRestEncryptionEnabled": False,
        "ARN": arn(rec.region, rec.account, rec.KIND, rec.id),
        "ReplicationGroupLogDeliveryEnabled": False,
        "LogDeliveryConfigurations": [],
        "NetworkType": spec.network_type,
        "IpDiscovery": spec.ip_discovery,
    }
    if status.nodes or spec.preferred_azs:
        zones = {n.az for n in status.nodes} or set(spec.preferred_azs)
        out["PreferredAvailabilityZone"] = zones.pop() if len(zones) == 1 else "Multiple"
    if status.announced_available:
        out["CacheClusterCreateTime"] = rec.created_at
    if spec.engine == "memcached" and status.config_host is not None:
        out["ConfigurationEndpoint"] = {"Address": status.config_host, "Port": status.config_port}
    if spec.notification_topic_arn:
        out["NotificationConfiguration"] = {"TopicArn": spec.notification_topic_arn, "TopicStatus": "active"}
    # Without one named, a cache is in the default subnet group (the region's every zone), as on AWS.
    out["CacheSubnetGroupName"] = spec.subnet_group or DEFAULT_SUBNET_GROUP
    if spec.replication_group_id:
        out["ReplicationGroupId"] = spec.replication_group_id
    if spec.engine != "memcached":  # AWS shows no backup settings for memcached, which has none
        out["SnapshotRetentionLimit"] = spec.snapshot_retention_limit
        out["SnapshotWindow"] = spec.snapshot_window
    if show_nodes:
        out["CacheNodes"] = [
            {
                "CacheNodeId": n.node_id,
                "CacheNodeStatus": "deleting" if rec.deleting() else n.status,
                "CacheNodeCreateTime": n.created_at,
                "Endpoint": {"Address": n.host, "Port": n.port},
                "ParameterGroupStatus": n.parameter_status or "in-sync",
                "CustomerAvailabilityZone": n.az,
            }
            for n in status.nodes
        ]
    return out


def _parameter_group(rec: CacheCluster) -> dict[str, Any]:
    """The group and how far its values reached the nodes (each node's status, by the reconciler)."""
    statuses = [n.parameter_status or "in-sync" for n in rec.status.nodes]
    overall = next((s for s in ("pending-reboot", "applying") if s in statuses), "in-sync")
    return {"CacheParameterGroupName": rec.spec.parameter_group, "ParameterApplyStatus": overall,
            "CacheNodeIdsToReboot": [n.node_id for n in rec.status.nodes if n.parameter_status == "pending-reboot"]}


def _pending(rec: CacheCluster) -> dict[str, Any]:
    pending = rec.unapplied()
    target = rec.target()
    out: dict[str, Any] = {}
    if pending.num_nodes is not None:
        out["NumCacheNodes"] = pending.num_nodes
    if pending.node_ids_to_remove:
        out["CacheNodeIdsToRemove"] = list(pending.node_ids_to_remove)
    if pending.engine_version is not None:
        out["EngineVersion"] = aws_release(rec.spec.engine, pending.engine_version)
    if pending.node_type is not None:
        out["CacheNodeType"] = pending.node_type
    # A resize applied immediately shows as pending until the nodes exist.
    if "NumCacheNodes" not in out and rec.status.announced_available and target.num_nodes != len(
        [n for n in rec.status.nodes if n.node_id not in target.node_ids_to_remove]
    ):
        out["NumCacheNodes"] = target.num_nodes
        removing = [n.node_id for n in rec.status.nodes if n.node_id in target.node_ids_to_remove]
        if removing:
            out["CacheNodeIdsToRemove"] = removing
    out.update(security.pending(rec.spec.security, rec.status.security_applied, groups=False))
    return out


def event(ev: Event) -> dict[str, Any]:
    return {"SourceIdentifier": ev.source_id, "SourceType": ev.source_type, "Message": ev.message,
            "Date": ev.date}


def tags(items: list[Tag]) -> list[dict[str, str]]:
    return [{"Key": t.key, "Value": t.value} for t in items]


def parameter_group_family(engine: str, version: str) -> str:
    return family_of(engine, version)


def replication_group(rg: ReplicationGroup, members: list[CacheCluster]) -> dict[str, Any]:
    spec, status = rg.spec, rg.status
    settling = rg.observed_generation < rg.generation or status.phase is None
    if spec.automatic_failover:
        failover = "enabling" if (settling and not status.announced_available) or _af_changing(rg) else "enabled"
    else:
        failover = "disabling" if _af_changing(rg) else "disabled"
    out: dict[str, Any] = {
        "ReplicationGroupId": rg.id,
        "Description": spec.description,
        "Status": rg.api_status(),
        "PendingModifiedValues": _rg_pending(rg),
        "MemberClusters": [m.id for m in members],
        "AutomaticFailover": failover,
        "MultiAZ": "enabled" if spec.multi_az else "disabled",
        "SnapshotRetentionLimit": spec.snapshot_retention_limit,
        "SnapshotWindow": spec.snapshot_window,
        "ClusterEnabled": False,
        "CacheNodeType": rg.target().node_type,
        **security.shown(spec.security, security.enforced(status.security_applied, status.announced_available)),
        "AtRestEncryptionEnabled": False,
        "ARN": arn(rg.region, rg.account, rg.KIND, rg.id),
        # The user groups every node has (what was asked, for a group not yet recorded): the rest is pending.
        "UserGroupIds": list((status.security_applied or spec.security).user_group_ids),
        "LogDeliveryConfigurations": [],
        "DataTiering": "disabled",
        "AutoMinorVersionUpgrade": spec.auto_minor_version_upgrade,
        "NetworkType": "ipv4",
        "IpDiscovery": "ipv4",
        "ClusterMode": "disabled",
        "Engine": spec.engine,
    }
    if status.announced_available:
        out["ReplicationGroupCreateTime"] = rg.created_at
    if spec.snapshotting_cluster_id:
        out["SnapshottingClusterId"] = spec.snapshotting_cluster_id
    if rg.cluster_enabled:
        return _cluster_mode(rg, members, out)
    group: dict[str, Any] = {"NodeGroupId": "0001", "Status": "available" if rg.api_status() == "available"
                             else rg.api_status(), "NodeGroupMembers": _node_members(members, status.primary)}
    if status.primary_host is not None:
        group["PrimaryEndpoint"] = {"Address": status.primary_host, "Port": status.primary_port or spec.port}
    if status.reader_host is not None:
        group["ReaderEndpoint"] = {"Address": status.reader_host, "Port": status.reader_port or spec.port}
    out["NodeGroups"] = [group]
    return out


def _node_members(members: list[CacheCluster], primary: str | None) -> list[dict[str, Any]]:
    out = []
    for m in members:
        if not m.status.nodes:
            continue
        node = m.status.nodes[0]
        member: dict[str, Any] = {
            "CacheClusterId": m.id,
            "CacheNodeId": node.node_id,
            "ReadEndpoint": {"Address": node.host, "Port": node.port},
            "PreferredAvailabilityZone": node.az,
        }
        if primary is not None:
            member["CurrentRole"] = "primary" if m.id == primary else "replica"
        out.append(member)
    return out


def _cluster_mode(rg: ReplicationGroup, members: list[CacheCluster], out: dict[str, Any]) -> dict[str, Any]:
    """Cluster mode enabled: a configuration endpoint and no primary/reader endpoints (as AWS),
    every shard with its slots and its members (each member's role as the cluster has it now)."""
    spec, status = rg.spec, rg.status
    out["ClusterEnabled"] = True
    out["ClusterMode"] = spec.cluster_mode
    if status.config_host is not None:
        out["ConfigurationEndpoint"] = {"Address": status.config_host, "Port": status.config_port or spec.port}
    shown = "available" if rg.api_status() == "available" else rg.api_status()
    groups = []
    for group in spec.node_groups:
        failing = status.failover is not None and status.failover.node_group == group.id
        shard = [m for m in members if m.spec.node_group_id == group.id]
        groups.append({"NodeGroupId": group.id, "Status": "modifying" if failing and shown == "available" else shown,
                       "Slots": group.slots_text(),
                       "NodeGroupMembers": _node_members(shard, status.shard_primaries.get(group.id))})
    out["NodeGroups"] = groups
    return out


def _af_changing(rg: ReplicationGroup) -> bool:
    return rg.status.announced_available and rg.observed_generation < rg.generation and \
        rg.status.af_applied is not None and rg.status.af_applied != rg.spec.automatic_failover


def _rg_pending(rg: ReplicationGroup) -> dict[str, Any]:
    out: dict[str, Any] = {}
    change = rg.spec.primary_change
    if change is not None and change.seq > rg.status.primary_change_done:
        out["PrimaryClusterId"] = change.member
    if _af_changing(rg):
        out["AutomaticFailoverStatus"] = "enabled" if rg.spec.automatic_failover else "disabled"
    applied = security.enforced(rg.status.security_applied, rg.status.announced_available)
    out.update(security.pending(rg.spec.security, applied, groups=True))
    return out


def snapshot(rec: Snapshot, status: str, show_node_groups: bool) -> dict[str, Any]:
    """A Snapshot shape. `status` is the API status, which may depend on other records (a
    snapshot a cache is being restored from reads "restoring")."""
    spec, config = rec.spec, rec.spec.config
    out: dict[str, Any] = {
        "SnapshotName": rec.id,
        "SnapshotStatus": status,
        "SnapshotSource": spec.source,
        "CacheNodeType": config.node_type,
        "Engine": config.engine,
        "EngineVersion": aws_release(config.engine, config.engine_version),
        "PreferredMaintenanceWindow": config.maintenance_window,
        "Port": config.port,
        "CacheParameterGroupName": config.parameter_group,
        "AutoMinorVersionUpgrade": config.auto_minor_version_upgrade,
        "SnapshotRetentionLimit": config.snapshot_retention_limit,
        "ARN": arn(rec.region, rec.account, rec.KIND, rec.id),
        "DataTiering": "disabled",
        "NodeSnapshots": _node_snapshots(rec, show_node_groups),
    }
    optional = {
        "ReplicationGroupId": spec.replication_group_id,
        "ReplicationGroupDescription": config.description,
        "CacheClusterId": None if spec.replication_group_id else spec.cache_cluster_id,
        "NumCacheNodes": None if spec.replication_group_id else config.num_nodes,
        "PreferredAvailabilityZone": None if spec.replication_group_id else config.preferred_az,
        "CacheClusterCreateTime": config.cluster_created_at,
        "TopicArn": config.topic_arn,
        "CacheSubnetGroupName": config.subnet_group or DEFAULT_SUBNET_GROUP,
        "VpcId": vpc_id(rec.account, rec.region),  # the subnet groups' one VPC (state/subnet_groups.py)
        "SnapshotWindow": config.snapshot_window,
        "NumNodeGroups": config.num_node_groups,
        "AutomaticFailover": config.automatic_failover,
        "KmsKeyId": spec.kms_key_id,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    return out


def _node_snapshots(rec: Snapshot, show_node_groups: bool) -> list[dict[str, Any]]:
    config = rec.spec.config
    group = rec.spec.replication_group_id is not None
    out: list[dict[str, Any]] = []
    for node in rec.status.nodes:
        item: dict[str, Any] = {
            "CacheClusterId": node.cache_cluster_id,
            "CacheNodeId": node.cache_node_id,
            "CacheSize": f"{round(node.size / 1048576)} MB",
            "SnapshotCreateTime": node.created_at,
        }
        if node.node_created_at is not None:
            item["CacheNodeCreateTime"] = node.node_created_at
        shard = next((g for g in config.shards if g.id == node.node_group_id), None)
        if shard is not None:  # cluster mode: each node group's own configuration
            item["NodeGroupId"] = shard.id
            if show_node_groups:
                item["NodeGroupConfiguration"] = {
                    "NodeGroupId": shard.id, "Slots": shard.slots, "ReplicaCount": shard.replica_count,
                    **({"PrimaryAvailabilityZone": shard.primary_az} if shard.primary_az else {}),
                    "ReplicaAvailabilityZones": list(shard.replica_azs)}
        elif group:
            item["NodeGroupId"] = node.node_group_id or "0001"
            if show_node_groups:
                item["NodeGroupConfiguration"] = {
                    "NodeGroupId": node.node_group_id or "0001",
                    "ReplicaCount": config.replica_count or 0,
                    "PrimaryAvailabilityZone": config.primary_az,
                    "ReplicaAvailabilityZones": list(config.replica_azs),
                }
        out.append(item)
    return out
