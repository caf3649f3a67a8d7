"""Tenant and internal NATS namespaces cannot meet, whatever an application is called."""

from __future__ import annotations

import itertools

import pytest

from nexxus.api.applications import APP_ID_RE
from nexxus.core.subjects import Subjects, token

S = Subjects("nexxus")

# Application ids spelled like every token the subjects use, plus ordinary ones.
TRICKY_APPS = ["write", "events", "parked", "control", "transport", "results", "schemas", "sys", "app", "a1"]
NODES = ["node-1", "write", "control", "app", "sys"]


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching (`*` one token, `>` one or more trailing tokens)."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def app_subjects(app: str) -> list[str]:
    return [S.write(app, 3), S.events(app, "task"), S.events(app, "transport"), S.parked(app)]


def internal_subjects(app: str, node: str) -> list[str]:
    return [S.delivery(node), S.control(app), S.result(node, "cmd-1"), S.schemas_changed]


def test_tricky_ids_are_valid_application_ids() -> None:
    assert all(APP_ID_RE.match(app) for app in TRICKY_APPS)


@pytest.mark.parametrize(("app", "node"), list(itertools.product(TRICKY_APPS, NODES)))
def test_no_subject_reaches_another_namespace(app: str, node: str) -> None:
    app_filters = [S.writes, S.all_events, *S.all_parked]
    sys_filters = [S.deliveries, S.all_control, S.results(node), S.schemas_changed]
    for subject in app_subjects(app):
        assert not any(matches(f, subject) for f in sys_filters), subject
    for other in TRICKY_APPS:
        for subject in internal_subjects(other, node):
            assert not any(matches(f, subject) for f in app_filters), subject


@pytest.mark.parametrize("app", TRICKY_APPS)
def test_each_subject_lands_in_exactly_one_stream(app: str) -> None:
    streams = {
        "writes": [S.writes],
        "events": [S.all_events],
        "parked": S.all_parked,
        "deliveries": [S.deliveries],
    }
    expected = {S.write(app, 0): "writes", S.events(app, "m"): "events", S.parked(app): "parked"}
    expected[S.delivery(app)] = "deliveries"
    expected[S.control(app)] = ""  # volatile: stored by no stream
    for subject, stream in expected.items():
        hits = [name for name, filters in streams.items() if any(matches(f, subject) for f in filters)]
        assert hits == ([stream] if stream else []), (subject, hits)


def test_the_application_is_read_back_from_its_subjects() -> None:
    for app in TRICKY_APPS:
        assert Subjects.app_of(S.write(app, 7)) == app
        assert Subjects.app_of(S.parked(app)) == app
    assert Subjects.app_of(S.control("write")) is None
    assert Subjects.app_of(S.delivery("app")) is None


def test_tokens_never_split() -> None:
    assert token("a.b c>*") == "a_b_c__"
    assert token("") == "_"
    assert "." not in S.delivery("host.example:5").removeprefix("nexxus.sys.transport.")
