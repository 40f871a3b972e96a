"""Cache subnet groups. There is no VPC here, so a subnet is only an id and the availability zone
it is in, by this documented rule (`subnet_zone`):

- an id that ends with `-<zone>` (a zone of the region: `subnet-web-us-east-1b`) is in that zone;
- any other id is in the zone a stable hash of the id picks among the region's zones (the same
  id is always in the same zone, in every account).

Every account and region has the subnet group `default` (AWS's default VPC's default subnets):
one subnet per zone of the region. A subnet group's zones are where the nodes of the caches using
it are placed."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel, Field

from controlplane import catalog
from controlplane.state.records import Record

DEFAULT_SUBNET_GROUP = "default"
DEFAULT_DESCRIPTION = "default"


def subnet_zone(region: str, subnet_id: str) -> str:
    """The availability zone of a subnet: the zone its id ends with, else a stable hash's choice."""
    zones = catalog.availability_zones(region)
    for zone in zones:
        if subnet_id.endswith("-" + zone):
            return zone
    digest = hashlib.sha256(subnet_id.encode()).digest()
    return zones[int.from_bytes(digest[:8], "big") % len(zones)]


def vpc_id(account: str, region: str) -> str:
    """The one VPC of an account and region (its default VPC), as a stable id."""
    return "vpc-" + hashlib.sha256(f"{account}/{region}".encode()).hexdigest()[:17]


class CacheSubnetGroupSpec(BaseModel):
    description: str
    subnet_ids: list[str] = Field(default_factory=list)


class CacheSubnetGroup(Record):
    """No status: a subnet group is a configuration record, valid as soon as it is written."""

    KIND: ClassVar[str] = "cache-subnet-group"

    spec: CacheSubnetGroupSpec

    def api_status(self) -> str:
        """What the live feed shows: a configuration record is in effect once written."""
        return "available"

    def zones(self) -> list[str]:
        """The zones of its subnets, in the region's order."""
        present = {subnet_zone(self.region, s) for s in self.spec.subnet_ids}
        return [z for z in catalog.availability_zones(self.region) if z in present]


def builtin_default_group(account: str, region: str, created_at: datetime) -> CacheSubnetGroup:
    subnets = [f"subnet-default-{zone}" for zone in catalog.availability_zones(region)]
    return CacheSubnetGroup(account=account, region=region, id=DEFAULT_SUBNET_GROUP, created_at=created_at,
                            spec=CacheSubnetGroupSpec(description=DEFAULT_DESCRIPTION, subnet_ids=subnets))
