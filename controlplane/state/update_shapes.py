"""Service updates and update actions as the model's ServiceUpdate and UpdateAction shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from controlplane.state.service_updates import UPDATE_TYPE, NodeProgress, ServiceUpdate, UpdateAction

# Locally a node restarts on its new version in about a second (plus a replica's first sync).
ESTIMATED_UPDATE_TIME = "a few seconds per node"
NODE_GROUP = "0001"  # the one node group of a replication group with cluster mode disabled


def service_update(update: ServiceUpdate, now: datetime) -> dict[str, Any]:
    s = update.status
    return {
        "ServiceUpdateName": update.id,
        "ServiceUpdateReleaseDate": s.released_at,
        "ServiceUpdateEndDate": s.ends_at,
        "ServiceUpdateSeverity": s.severity,
        "ServiceUpdateRecommendedApplyByDate": s.recommended_apply_by,
        "ServiceUpdateStatus": update.api_status(now),
        "ServiceUpdateDescription": s.description,
        "ServiceUpdateType": UPDATE_TYPE,
        "Engine": s.engine,
        "EngineVersion": s.engine_version,
        "AutoUpdateAfterRecommendedApplyByDate": s.auto_update,
        "EstimatedUpdateTime": ESTIMATED_UPDATE_TIME,
    }


def _initiated(action: UpdateAction) -> tuple[str, datetime] | None:
    """Who applied the update and when: the user (BatchApplyUpdateAction) or the service (its
    maintenance window, after the recommended apply-by date)."""
    if action.spec.apply_seq > 0 and action.spec.apply_seq >= action.status.auto_seq and action.spec.applied_at:
        return "customer", action.spec.applied_at
    if action.status.auto_seq > 0 and action.status.auto_applied_at is not None:
        return "system", action.status.auto_applied_at
    return None


def _sla_met(action: UpdateAction, update: ServiceUpdate, cache_created_at: datetime, now: datetime) -> str | None:
    due = update.status.recommended_apply_by
    if cache_created_at > due:
        return "n/a"
    done = action.status.completed_at
    if done is not None:
        return "yes" if done <= due else "no"
    return "no" if now > due else None  # not due yet: neither met nor missed


def _node(progress: NodeProgress, initiated: tuple[str, datetime] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"NodeUpdateStatus": progress.status, "NodeUpdateStatusModifiedDate": progress.modified_at}
    if progress.started_at is not None:
        out["NodeUpdateStartDate"] = progress.started_at
    if progress.ended_at is not None:
        out["NodeUpdateEndDate"] = progress.ended_at
    if initiated is not None and progress.status != "not-applied":
        out["NodeUpdateInitiatedBy"], out["NodeUpdateInitiatedDate"] = initiated
    return out


def update_action(action: UpdateAction, update: ServiceUpdate, cache_created_at: datetime, now: datetime,
                  show_nodes: bool) -> dict[str, Any]:
    s = update.status
    out: dict[str, Any] = {
        "ReplicationGroupId" if action.target == "group" else "CacheClusterId": action.target_id,
        "ServiceUpdateName": update.id,
        "ServiceUpdateReleaseDate": s.released_at,
        "ServiceUpdateSeverity": s.severity,
        "ServiceUpdateStatus": update.api_status(now),
        "ServiceUpdateRecommendedApplyByDate": s.recommended_apply_by,
        "ServiceUpdateType": UPDATE_TYPE,
        "UpdateActionAvailableDate": action.created_at,
        "UpdateActionStatus": action.api_status(),
        "NodesUpdated": f"{action.status.nodes_updated}/{action.status.nodes_total}",
        "UpdateActionStatusModifiedDate": action.status.modified_at or action.created_at,
        "EstimatedUpdateTime": ESTIMATED_UPDATE_TIME,
        "Engine": s.engine,
    }
    sla = _sla_met(action, update, cache_created_at, now)
    if sla is not None:
        out["SlaMet"] = sla
    if not show_nodes:
        return out
    initiated = _initiated(action)
    nodes = sorted(action.status.nodes.items())
    if action.target == "group":
        members = []
        for label, progress in nodes:
            cluster_id, node_id = label.split("/")
            members.append({"CacheClusterId": cluster_id, "CacheNodeId": node_id, **_node(progress, initiated)})
        out["NodeGroupUpdateStatus"] = [{"NodeGroupId": NODE_GROUP, "NodeGroupMemberUpdateStatus": members}]
    else:
        out["CacheNodeUpdateStatus"] = [{"CacheNodeId": label.split("/")[1], **_node(progress, initiated)}
                                        for label, progress in nodes]
    return out
