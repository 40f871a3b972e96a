"""DescribeServiceUpdates, DescribeUpdateActions, BatchApplyUpdateAction, BatchStopUpdateAction.

The control loop publishes the updates (a patch release this machine can run that is newer
than what a cache's nodes run) and their actions (state.service_updates); these handlers list
them, and record the user's apply and stop requests in the actions' spec for the control loop
to carry out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import cast

from controlplane.handlers import validate as v
from controlplane.handlers.context import HandlerTable, RequestContext
from controlplane.model import messages as m
from controlplane.model.errors import ServiceUpdateNotFoundFault
from controlplane.state import update_shapes
from controlplane.state.records import CacheCluster, ReplicationGroup
from controlplane.state.service_updates import ServiceUpdate, Target, UpdateAction, action_id

ENGINES = ("redis", "valkey", "memcached")


def _update(ctx: RequestContext, name: str) -> ServiceUpdate:
    update = ctx.services.store.get(ctx.key(ServiceUpdate.KIND, name), ServiceUpdate)
    if update is None:
        raise ServiceUpdateNotFoundFault(f"Service update {name} not found.")
    return update


def describe_service_updates(ctx: RequestContext, params: m.DescribeServiceUpdatesMessage) -> m.ServiceUpdatesMessage:
    store, now = ctx.services.store, ctx.services.clock.now()
    name = params.get("ServiceUpdateName")
    updates = [_update(ctx, name)] if name else store.records(ServiceUpdate, ctx.account, ctx.region)
    statuses = params.get("ServiceUpdateStatus")
    if statuses:
        updates = [u for u in updates if u.api_status(now) in statuses]
    return cast(m.ServiceUpdatesMessage, v.listing("ServiceUpdates", updates, params,
                                                   lambda u: update_shapes.service_update(u, now), store))


def _time_filter(params: m.DescribeUpdateActionsMessage) -> Callable[[datetime], bool]:
    window = params.get("ServiceUpdateTimeRange")
    start, end = (window.get("StartTime"), window.get("EndTime")) if window else (None, None)
    if start is not None and end is not None and start > end:
        raise v.invalid("ServiceUpdateTimeRange: StartTime must not be after EndTime.")
    return lambda when: (start is None or when >= start) and (end is None or when <= end)


def describe_update_actions(ctx: RequestContext, params: m.DescribeUpdateActionsMessage) -> m.UpdateActionsMessage:
    store, now = ctx.services.store, ctx.services.clock.now()
    group_ids = {i.lower() for i in params.get("ReplicationGroupIds", [])}
    cluster_ids = {i.lower() for i in params.get("CacheClusterIds", [])}
    if group_ids and cluster_ids:
        raise v.combination("Specify ReplicationGroupIds or CacheClusterIds, not both.")
    engine = params.get("Engine")
    if engine is not None and engine.lower() not in ENGINES:
        raise v.invalid(f"Invalid engine {engine}: must be one of {', '.join(ENGINES)}.")
    in_range = _time_filter(params)
    name = params.get("ServiceUpdateName")
    update_statuses = params.get("ServiceUpdateStatus")
    action_statuses = params.get("UpdateActionStatus")
    shown: list[tuple[UpdateAction, ServiceUpdate, datetime]] = []
    for action in store.records(UpdateAction, ctx.account, ctx.region):
        update = store.get(ctx.key(ServiceUpdate.KIND, action.update), ServiceUpdate)
        cache = _target(ctx, action.target, action.target_id)
        if update is None or cache is None:
            continue  # the control loop is about to remove it
        if ((name and action.update != name)
                or (group_ids and (action.target != "group" or action.target_id not in group_ids))
                or (cluster_ids and (action.target != "cluster" or action.target_id not in cluster_ids))
                or (engine and update.status.engine != engine.lower())
                or (update_statuses and update.api_status(now) not in update_statuses)
                or (action_statuses and action.api_status() not in action_statuses)
                or not in_range(update.status.released_at)):
            continue
        shown.append((action, update, cache.created_at))
    chunk, marker = v.page(shown, params.get("MaxRecords"), params.get("Marker"),
                           key=lambda item: store.seq(item[0].key))
    show_nodes = bool(params.get("ShowNodeLevelUpdateStatus"))
    out: m.UpdateActionsMessage = {"UpdateActions": [
        cast(m.UpdateAction, update_shapes.update_action(a, u, created, now, show_nodes)) for a, u, created in chunk]}
    if marker:
        out["Marker"] = marker
    return out


def _target(ctx: RequestContext, target: Target, target_id: str) -> CacheCluster | ReplicationGroup | None:
    if target == "group":
        return ctx.services.store.get(ctx.key(ReplicationGroup.KIND, target_id), ReplicationGroup)
    return ctx.services.store.get(ctx.key(CacheCluster.KIND, target_id), CacheCluster)


# What a batch call does to one action: refused (the reason), or accepted: the spec change to
# store (None: the request is already in effect) and the status to report.
Refused = str
Accepted = tuple[Callable[[UpdateAction], None] | None, str]
Decision = Refused | Accepted


def _batch(ctx: RequestContext, name: str, group_ids: list[str], cluster_ids: list[str],
           decide: Callable[[UpdateAction], Decision]) -> m.UpdateActionResultsMessage:
    update = _update(ctx, name)
    if not group_ids and not cluster_ids:
        raise v.invalid("At least one of ReplicationGroupIds or CacheClusterIds must be given.")
    store, now = ctx.services.store, ctx.services.clock.now()
    processed: list[m.ProcessedUpdateAction] = []
    unprocessed: list[m.UnprocessedUpdateAction] = []
    targets: list[tuple[Target, str]] = [("group", i) for i in dict.fromkeys(group_ids)]
    targets += [("cluster", i) for i in dict.fromkeys(cluster_ids)]
    for target, given in targets:
        id_field = "ReplicationGroupId" if target == "group" else "CacheClusterId"
        cache = _target(ctx, target, given.lower())

        def refuse(error: str, message: str, given: str = given, id_field: str = id_field) -> None:
            unprocessed.append(cast(m.UnprocessedUpdateAction, {
                id_field: given, "ServiceUpdateName": name, "ErrorType": error, "ErrorMessage": message}))

        if cache is None:
            refuse("ReplicationGroupNotFoundFault" if target == "group" else "CacheClusterNotFound",
                   f"{'ReplicationGroup' if target == 'group' else 'CacheCluster'} {given} not found.")
            continue
        if isinstance(cache, CacheCluster) and cache.spec.replication_group_id:
            refuse("InvalidParameterValue", f"Cache cluster {cache.id} is a member of replication group "
                                            f"{cache.spec.replication_group_id}: name the replication group.")
            continue
        action = store.get(ctx.key(UpdateAction.KIND, action_id(name, target, cache.id)), UpdateAction)
        if action is None or action.api_status() == "not-applicable":
            refuse("InvalidParameterValue", f"Service update {name} does not apply to {cache.id}: its nodes do "
                                            f"not run an older {update.status.engine} patch release of "
                                            f"{update.status.engine_version}'s line.")
            continue
        if update.api_status(now) != "available":
            refuse("InvalidParameterValue", f"Service update {name} is {update.api_status(now)}.")
            continue
        decision = decide(action)
        if isinstance(decision, str):
            refuse("InvalidParameterValue", decision)
            continue
        change, reported = decision
        if change is not None and store.update(action.key, UpdateAction, change) is None:
            refuse("InvalidParameterValue", f"Service update {name} no longer applies to {cache.id}.")
            continue
        ctx.services.enqueue(action.key)
        ctx.services.enqueue(cache.key)
        processed.append(cast(m.ProcessedUpdateAction, {
            id_field: cache.id, "ServiceUpdateName": name, "UpdateActionStatus": reported}))
    return {"ProcessedUpdateActions": processed, "UnprocessedUpdateActions": unprocessed}


def batch_apply_update_action(ctx: RequestContext,
                              params: m.BatchApplyUpdateActionMessage) -> m.UpdateActionResultsMessage:
    now = ctx.services.clock.now()

    def decide(action: UpdateAction) -> Decision:
        state = action.api_status()
        if state == "complete":
            return f"Service update {action.update} is already applied to {action.target_id}."
        if state == "stopping":
            return (f"Service update {action.update} is stopping on {action.target_id}; apply it again once "
                    "it is stopped.")
        if action.active():
            return None, state  # already being applied: nothing more to ask

        def apply(a: UpdateAction) -> None:
            a.spec.apply_seq = max(a.spec.apply_seq, a.spec.stop_seq, a.status.auto_seq) + 1
            a.spec.applied_at = now

        return apply, "waiting-to-start"

    return _batch(ctx, params["ServiceUpdateName"], params.get("ReplicationGroupIds", []),
                  params.get("CacheClusterIds", []), decide)


def batch_stop_update_action(ctx: RequestContext,
                             params: m.BatchStopUpdateActionMessage) -> m.UpdateActionResultsMessage:
    now = ctx.services.clock.now()

    def decide(action: UpdateAction) -> Decision:
        state = action.api_status()
        if state in ("stopping", "stopped"):
            return None, state
        if not action.active():
            return f"Service update {action.update} is not being applied to {action.target_id} ({state})."

        def stop(a: UpdateAction) -> None:
            a.spec.stop_seq = a.requested_seq()
            a.spec.stopped_at = now

        return stop, "stopping"

    return _batch(ctx, params["ServiceUpdateName"], params.get("ReplicationGroupIds", []),
                  params.get("CacheClusterIds", []), decide)


HANDLERS: HandlerTable = {
    "DescribeServiceUpdates": describe_service_updates,
    "DescribeUpdateActions": describe_update_actions,
    "BatchApplyUpdateAction": batch_apply_update_action,
    "BatchStopUpdateAction": batch_stop_update_action,
}
