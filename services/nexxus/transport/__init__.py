"""The transport service: holds device connections and pushes deliveries to them.

hub.py          ConnectionHub: the connection registry, delivery fan-out, control
connection.py   QueuedConnection: a per-connection outbound queue bounded in bytes
lease.py        NodeLease: the node's connection lease; reaping dead nodes
tokens.py       TokenWatch: closing streams whose access token expired or was revoked
events.py       build_event: ModelEvent + kind → the public Event
wire.py         hand-built wire bytes: per-device Events, StreamEventsResponse frames
session.py      transport-neutral session steps (device check, heartbeat, inline subscriptions)
grpc_stream.py  EventStreamServicer: nexxus.v1.EventService.StreamEvents
frames.py       WebSocket JSON frames (ClientFrame / ServerFrame)
websocket.py    WebSocketBridge: /v1/apps/{app_id}/ws
sse.py          SseServer: server-sent events, GET /v1/apps/{app_id}/events
server.py       building the gRPC, WebSocket and SSE servers (bound, not started)
service.py      TransportService: wiring, start / graceful stop
"""
