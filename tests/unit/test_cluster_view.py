"""engine.cluster: CLUSTER NODES / INFO as the engines print them, and slot range arithmetic."""

from __future__ import annotations

from engine.cluster import covers_all, even_ranges, merge_ranges, parse_cluster_nodes, slot_count, view_of

NODES = """\
07c3 127.0.120.1:6379@16379 myself,master - 0 1700000000000 1 connected 0-5461
67ed 127.0.120.2:6379@16379 slave 07c3 0 1700000000000 1 connected
292f 127.0.120.3:6379@16379,host.example master,fail? - 0 1700000000000 2 connected 5462-10922 [5463->-e7d1]
e7d1 127.0.120.5:6379@16379 master - 0 1700000000000 3 connected 10923-16383
aa11 127.0.120.6:6379@16379 handshake - 0 0 0 disconnected
"""


def test_cluster_nodes_are_parsed_as_each_node_sees_them() -> None:
    nodes = {n.node_id: n for n in parse_cluster_nodes(NODES)}
    assert nodes["07c3"].myself and nodes["07c3"].slots == ((0, 5461),)
    assert nodes["67ed"].role == "slave" and nodes["67ed"].master_id == "07c3" and nodes["67ed"].slots == ()
    # A slot being migrated is left out; a suspected node is failing; the hostname is not the address.
    assert nodes["292f"].failing and nodes["292f"].slots == ((5462, 10922),) and nodes["292f"].host == "127.0.120.3"
    assert nodes["aa11"].handshake and nodes["e7d1"].config_epoch == 3
    view = view_of("cluster_state:ok\r\ncluster_known_nodes:5\r\n", NODES)
    assert view.state_ok and view.known_nodes == 5 and view.me.node_id == "07c3"
    assert view.by_address("127.0.120.6", 6379) is None  # still in handshake: not known by its id
    assert view.slot_map() == {(0, 5461): "07c3", (5462, 10922): "292f", (10923, 16383): "e7d1"}


def test_slot_ranges() -> None:
    assert even_ranges(3) == [(0, 5461), (5462, 10922), (10923, 16383)]  # as redis-cli --cluster create
    assert covers_all(even_ranges(7)) and slot_count(even_ranges(500)) == 16384
    assert merge_ranges([(5, 9), (0, 4), (20, 30), (25, 40)]) == ((0, 9), (20, 40))
    assert not covers_all([(0, 100), (102, 16383)])
