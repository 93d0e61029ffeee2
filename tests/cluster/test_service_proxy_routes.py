"""The local service proxy's routing decisions, as kube-proxy makes them, without a cluster: endpoint
selection from EndpointSlices, port matching, turn-taking, and the addresses the proxy publishes."""

from __future__ import annotations

from tests.cluster.service_objects import endpoint, service_body, slice_body
from tests.cluster.service_proxy import address_table, annotated_port
from tests.cluster.service_routes import (
    Backend,
    RoundRobin,
    ServicePort,
    ready_backends,
    service_ports,
    slice_port,
)

HTTP = ServicePort("http", 8000, "http")


def test_only_ready_endpoints_that_are_not_terminating_get_connections() -> None:
    endpoints = [
        endpoint("10.0.0.1", ready=True),
        endpoint("10.0.0.2", ready=False),
        endpoint("10.0.0.3", ready=True, terminating=True),
        endpoint("10.0.0.4", ready=False, serving=True, terminating=True),
        endpoint("10.0.0.5"),  # no ready condition: the API reads it as ready
    ]
    assert ready_backends(HTTP, [slice_body("a", endpoints)]) == [
        Backend("10.0.0.1", 8000),
        Backend("10.0.0.5", 8000),
    ]


def test_endpoints_of_every_slice_count_once_each() -> None:
    moving = endpoint("10.0.0.1", ready=True)
    slices = [
        slice_body("a", [moving, endpoint("10.0.0.2", ready=True)]),
        slice_body("b", [moving, {"addresses": [], "conditions": {"ready": True}}]),
        slice_body("c", [endpoint("10.0.0.3", ready=True)], ports=[{"name": "http", "port": 8001}]),
    ]
    assert ready_backends(HTTP, slices) == [
        Backend("10.0.0.1", 8000),
        Backend("10.0.0.2", 8000),
        Backend("10.0.0.3", 8001),  # a slice of a newer revision may serve on another port number
    ]


def test_each_service_port_goes_to_the_slice_port_of_its_name() -> None:
    both = slice_body(
        "a",
        [endpoint("10.0.0.1", ready=True)],
        ports=[{"name": "metrics", "port": 9090}, {"name": "http", "port": 8000}],
    )
    http, metrics = service_ports(service_body())
    assert (slice_port(http, both), slice_port(metrics, both)) == (8000, 9090)
    only_http = slice_body("b", [], ports=[{"name": "http", "port": 8000}])
    assert slice_port(metrics, only_http) is None
    assert ready_backends(metrics, [slice_body("c", [endpoint("10.0.0.1", ready=True)])]) == []


def test_a_hand_written_slice_may_name_the_target_port_or_give_its_number() -> None:
    named_target = ServicePort("api", 80, "http")
    assert slice_port(named_target, slice_body("a", [], ports=[{"name": "http", "port": 8000}])) == 8000
    numbered_target = ServicePort("api", 80, 8000)
    assert slice_port(numbered_target, slice_body("b", [], ports=[{"port": 8000}])) == 8000
    assert slice_port(numbered_target, slice_body("c", [], ports=[{"port": 8001}])) is None
    # The name decides when it matches: a targetPort number never overrides it.
    assert slice_port(numbered_target, slice_body("d", [], ports=[{"name": "api", "port": 7000}])) == 7000


def test_an_unnamed_port_matches_the_unnamed_slice_port() -> None:
    (unnamed,) = service_ports(service_body(ports=[{"port": 80, "targetPort": 8000}]))
    assert unnamed.key == "80"
    assert slice_port(unnamed, slice_body("a", [], ports=[{"port": 8000, "protocol": "TCP"}])) == 8000
    assert slice_port(unnamed, slice_body("b", [], ports=[{"name": "", "port": 8001}])) == 8001


def test_udp_ports_are_neither_proxied_nor_matched() -> None:
    ports = service_ports(
        service_body(ports=[{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "http", "port": 80}])
    )
    assert [port.name for port in ports] == ["http"]
    udp_slice = slice_body("a", [], ports=[{"name": "http", "port": 8000, "protocol": "UDP"}])
    assert slice_port(ports[0], udp_slice) is None


def test_round_robin_takes_turns_and_survives_a_list_that_shrinks() -> None:
    turns = RoundRobin()
    three = [Backend("10.0.0.1", 1), Backend("10.0.0.2", 1), Backend("10.0.0.3", 1)]
    firsts = [turns.order(three)[0].address for _ in range(4)]
    assert firsts == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1"]
    assert turns.order(three) == [three[1], three[2], three[0]]  # the rest are fallbacks, in turn
    assert turns.order(three[:1]) == three[:1]
    assert turns.order([]) == []


def test_the_address_table_lists_services_that_exist_by_port_key() -> None:
    services = {("team", "chat"): service_body(), ("team", "gone-port"): service_body(ports=[{"port": 81}])}
    listening = {
        ("team", "chat", "http"): 40001,
        ("team", "chat", "metrics"): 40002,
        ("team", "old", "http"): 1,
    }
    assert address_table(services, listening) == {
        "team/chat": {"http": "127.0.0.1:40001", "metrics": "127.0.0.1:40002"}
    }


def test_the_annotation_names_the_http_port_else_the_first() -> None:
    assert annotated_port(service_ports(service_body())) == ServicePort("http", 8000, "http")
    grpc_first = service_body(ports=[{"name": "grpc", "port": 8001}, {"name": "admin", "port": 8002}])
    assert annotated_port(service_ports(grpc_first)) == ServicePort("grpc", 8001, None)
    assert annotated_port([]) is None
