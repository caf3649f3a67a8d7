"""The README's "Five minutes with curl and a WebSocket", run as written against
the real stack behind Envoy.

The curl commands are read out of README.md (method, path, credential, body),
so a walkthrough step that stops working fails here, not for a new user. The
README's placeholders (`SK=nxs_...`, `UT=eyJ...`, `DT=eyJ...`) are bound from
the answer before them, as a reader would; the `# → data: {...}` comments name
the events the SSE stream must print, in order; the WebSocket transcript's
`>` frames are sent and each `<` line names the frame that must come back.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect

from tests.edge.rest import Rest, sse_frames

pytestmark = pytest.mark.edge

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Five minutes with curl and a WebSocket"
WAIT = 20.0


@dataclass
class Curl:
    method: str
    path: str
    credential: str  # the shell variable after "Bearer $", or "" for none
    body: Any
    stream: bool  # `curl -N`: an SSE stream to keep open


@dataclass
class Bind:
    variable: str
    placeholder: str


def _section() -> str:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end != -1 else None]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


def _logical_lines(block: str) -> list[str]:
    """Lines with `\\` continuations joined and single-quoted bodies kept whole."""
    lines: list[str] = []
    pending = ""
    for raw in block.splitlines():
        pending = f"{pending}\n{raw}" if pending else raw
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        if pending.count("'") % 2:
            continue  # inside a quoted JSON body spanning lines
        lines.append(pending.strip())
        pending = ""
    return [line for line in lines if line]


def _parse(line: str) -> Curl | Bind | str | None:
    """One README line: a curl call, a placeholder binding, an expected event kind, or nothing."""
    if line.startswith("# →"):
        kind = re.search(r'"kind":"(EVENT_KIND_\w+)"', line)
        return kind.group(1) if kind else None
    if line.startswith("#"):
        return None
    if line.startswith("curl "):
        words = shlex.split(line, comments=True)
        method, credential, body, path, stream = "GET", "", None, "", False
        i = 1
        while i < len(words):
            word = words[i]
            if word == "-X":
                method, i = words[i + 1], i + 1
            elif word == "-H":
                header = words[i + 1]
                i += 1
                if header.lower().startswith("authorization: bearer $"):
                    credential = header.split("$", 1)[1]
            elif word == "-d":
                body, i = json.loads(words[i + 1]), i + 1
                method = "POST" if method == "GET" else method
            elif word == "-N":
                stream = True
            elif word.startswith("$N/"):
                path = word[2:]
            i += 1
        assert path, f"no $N/... URL in README line: {line}"
        return Curl(method, path, credential, body, stream)
    bind = re.match(r"([A-Z]+)=(nxs_|eyJ)\S*", line)
    if bind:
        return Bind(bind.group(1), bind.group(2))
    return None


def _steps() -> list[Curl | Bind | str]:
    steps: list[Curl | Bind | str] = []
    for block in _blocks(_section(), "bash"):
        for line in _logical_lines(block):
            step = _parse(line)
            if step is not None:
                steps.append(step)
    return steps


def _rename_app(value: Any, app_id: str) -> Any:
    """The walkthrough's app `todo` as a fresh app id (the stack is shared by the suite)."""
    text = json.dumps(value).replace('"todo"', json.dumps(app_id))
    return json.loads(text)


def test_the_walkthrough_is_read_out_of_the_readme() -> None:
    steps = _steps()
    curls = [s for s in steps if isinstance(s, Curl)]
    assert [c.method for c in curls[:3]] == ["POST", "PUT", "POST"], curls[:3]
    assert sum(c.stream for c in curls) == 1, "one `curl -N` event stream"
    assert {b.variable for b in steps if isinstance(b, Bind)} == {"SK", "UT", "DT"}
    assert [s for s in steps if isinstance(s, str)], "the expected events (# → data: ...)"


async def _sse_events(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    async for frame in sse_frames(resp, WAIT):
        if "event" in frame:
            yield frame["event"]


async def test_the_curl_walkthrough_works_as_written(rest: Rest) -> None:
    app_id = f"readme-{uuid.uuid4().hex[:8]}"
    credentials = {"OP": rest.token}
    last: dict[str, Any] = {}
    expected_kinds: list[str] = []
    stream: aiohttp.ClientResponse | None = None
    try:
        for step in _steps():
            if isinstance(step, str):
                expected_kinds.append(step)
            elif isinstance(step, Bind):
                # the README says where the value comes from: the answer just before
                value = last["serverKey"] if step.placeholder == "nxs_" else last["tokens"]["accessToken"]
                assert value.startswith(step.placeholder), (step, value)
                credentials[step.variable] = value
            else:
                path = step.path.replace("/apps/todo/", f"/apps/{app_id}/")
                caller = rest.as_(credentials[step.credential] if step.credential else "")
                if step.stream:
                    stream = await rest.session.get(
                        rest.base_url + path, headers=caller.headers(), timeout=aiohttp.ClientTimeout(None)
                    )
                    assert stream.status == 200, await stream.text()
                    continue
                reply = await caller.call(step.method, path, _rename_app(step.body, app_id))
                assert reply.status == 200, (step.method, step.path, reply.status, reply.body)
                last = reply.json
        assert stream is not None
        assert expected_kinds
        seen: list[str] = []
        async for event in _sse_events(stream):
            seen.append(event["kind"])
            if len(seen) == len(expected_kinds):
                break
        assert seen == expected_kinds
    finally:
        if stream is not None:
            stream.close()


def _websocket_transcript() -> list[tuple[str, dict[str, Any]]]:
    """The `>` (sent) and `<` (received) frames of the README's WebSocket example."""
    transcript: list[tuple[str, dict[str, Any]]] = []
    for block in _blocks(_section(), "bash"):
        for line in block.splitlines():
            mark = line[:2]
            if mark in ("> ", "< "):
                frame = line[2:].split("   #", 1)[0].strip()
                # the README elides values with "..."; only its top-level keys are checked on "<"
                keys = re.findall(r'^\{"(\w+)"', frame)
                parsed = json.loads(frame) if mark == "> " else {"keys": keys}
                transcript.append((mark.strip(), parsed))
    return transcript


async def test_the_websocket_example_works_as_written(rest: Rest) -> None:
    transcript = _websocket_transcript()
    assert [m for m, _ in transcript].count(">") >= 2, transcript
    app_id = f"readme-{uuid.uuid4().hex[:8]}"
    await rest.ok("POST", "/v1/apps", {"appId": app_id})
    await rest.ok(
        "PUT",
        f"/v1/apps/{app_id}/models/task",
        {
            "fields": {
                "status": {"type": "FIELD_TYPE_STRING", "filterable": True},
                "title": {"type": "FIELD_TYPE_STRING"},
            }
        },
    )
    await rest.ok(
        "POST", f"/v1/apps/{app_id}/users", {"username": "alice", "password": "correct horse battery"}
    )
    login = await rest.as_("").ok(
        "POST", f"/v1/apps/{app_id}/auth:login", {"login": "alice", "password": "correct horse battery"}
    )
    user = rest.as_(login["tokens"]["accessToken"])
    device = await user.ok("POST", f"/v1/apps/{app_id}/devices", {"name": "laptop"})
    dt = device["tokens"]["accessToken"]
    url = rest.base_url.replace("http://", "ws://") + f"/v1/apps/{app_id}/ws?access_token={dt}"
    async with connect(url) as ws:
        for mark, frame in transcript:
            if mark == ">":
                await ws.send(json.dumps(frame))
                continue
            if frame["keys"] == ["event"]:  # "after a write"
                await rest.as_(dt).ok(
                    "POST",
                    f"/v1/apps/{app_id}/models/task/objects",
                    {"data": {"title": "t", "status": "todo"}},
                )
            while True:
                got: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                if "heartbeat" not in got:
                    break
            assert next(iter(got)) == frame["keys"][0], (frame, got)
