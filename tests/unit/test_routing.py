"""Routes (first match wins, a requested relay wins), the internal-domains policy,
and `explain_route`'s account of a decision (core.routing)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.core.routing import (
    InternalPolicy,
    Route,
    RoutingTable,
    explain_route,
    internal_violations,
)

TABLE = RoutingTable((Route("*.corp.test", "internal"), Route("corp.test", "internal"),
                      Route("*.test", "bulk")), "default")
POLICY = InternalPolicy(("corp.test", "*.lab.example"), frozenset({"internal"}))


@pytest.mark.parametrize(("domain", "requested", "relay"), [
    ("mail.corp.test", None, "internal"),
    ("CORP.TEST", None, "internal"),
    ("shop.test", None, "bulk"),
    ("example.com", None, "default"),
    ("mail.corp.test", "bulk", "bulk"),
])
def test_first_matching_route_wins_unless_a_relay_is_requested(
        domain: str, requested: str | None, relay: str) -> None:
    assert TABLE.relay_for(domain, requested) == relay


@pytest.mark.parametrize(("domain", "rule"), [
    ("corp.test", (0, "corp.test")),
    ("mail.corp.test", (0, "corp.test")),  # a plain pattern covers subdomains
    ("Deep.Mail.CORP.test.", (0, "corp.test")),
    ("a.lab.example", (1, "*.lab.example")),
    ("notcorp.test", None),
    ("corp.test.evil", None),
    ("lab.example", None),
])
def test_internal_domains_cover_exact_names_subdomains_and_globs(
        domain: str, rule: tuple[int, str] | None) -> None:
    assert POLICY.rule_for(domain) == rule


def test_an_internal_recipient_on_a_non_internal_relay_is_a_violation() -> None:
    pairs = [("a@corp.test", "internal"), ("b@mail.corp.test", "bulk"), ("c@shop.test", "bulk")]
    (violation,) = internal_violations(pairs, POLICY)
    assert (violation.address, violation.relay, violation.rule_index) == (
        "b@mail.corp.test", "bulk", 0)
    assert not violation.requested
    assert violation.describe() == ("internal_domains[0] ('corp.test') makes b@mail.corp.test "
                                    "internal, but it is routed to relay 'bulk', which is not "
                                    "internal = true")


def test_a_requested_relay_is_named_as_the_client_s_choice() -> None:
    (violation,) = internal_violations([("a@corp.test", "bulk")], POLICY, requested="bulk")
    assert violation.requested
    assert "the client requested relay 'bulk'" in violation.describe()


def test_no_policy_means_no_violation() -> None:
    assert internal_violations([("a@corp.test", "bulk")], InternalPolicy()) == []


def test_explain_names_the_first_matching_rule_and_the_ones_after_it() -> None:
    found = explain_route("ann@mail.corp.test", TABLE, POLICY)
    assert found.relay == "internal" and found.violation is None
    assert found.lines() == [
        "domain: mail.corp.test",
        "routes[0] match '*.corp.test' -> internal: MATCHES",
        "routes[1] match 'corp.test' -> internal: no match",
        "routes[2] match '*.test' -> bulk: matches, but an earlier route won",
        "relay: internal (routes[0]: match '*.corp.test' is the first that matches)",
        "internal: yes, by internal_domains[0] ('corp.test')",
        "allowed: the relay may carry this recipient",
    ]


def test_explain_the_default_relay_and_a_held_request() -> None:
    default = explain_route("x@example.com", TABLE, POLICY)
    assert default.relay == "default"
    assert default.reason == "no route matches, so the default relay"
    assert default.lines()[-2] == "internal: no (no internal_domains entry covers it)"

    held = explain_route("ann@corp.test", TABLE, POLICY, requested="bulk")
    assert held.relay == "bulk" and held.violation is not None
    assert held.reason == "requested by the client; routes are not consulted"
    assert held.lines()[-1].startswith("HELD: internal_domains[0] ('corp.test')")


def test_a_route_to_a_non_internal_relay_for_an_internal_domain_is_held() -> None:
    misrouted = RoutingTable((Route("*.test", "bulk"),), "default")
    found = explain_route("ann@corp.test", misrouted, POLICY)
    assert found.violation is not None and found.violation.relay == "bulk"


domains = st.from_regex(r"[a-z]{1,6}(\.[a-z]{1,6}){0,3}", fullmatch=True)


@given(domains, st.sampled_from(["internal", "bulk", "default"]), st.booleans())
def test_policy_never_lets_an_internal_domain_out_of_a_non_internal_relay(
        domain: str, relay: str, requested: bool) -> None:
    found = internal_violations([(f"a@{domain}", relay)], POLICY, relay if requested else None)
    leaks = POLICY.rule_for(domain) is not None and relay != "internal"
    assert bool(found) == leaks
