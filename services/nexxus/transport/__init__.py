"""The transport service: holds device connections and pushes deliveries to them.

hub.py          ConnectionHub: the connection registry, delivery fan-out, control
connection.py   QueuedConnection: a bounded per-connection outbound queue
events.py       build_event: ModelEvent + kind → the public Event
wire.py         hand-built wire bytes: per-device Events, StreamEventsResponse frames
session.py      transport-neutral session steps (device check, heartbeat, inline subscriptions)
grpc_stream.py  EventStreamServicer: nexxus.v1.EventService.StreamEvents
frames.py       WebSocket JSON frames (ClientFrame / ServerFrame)
websocket.py    WebSocketBridge: /v1/apps/{app_id}/ws
server.py       building the gRPC and WebSocket servers (bound, not started)
service.py      TransportService: wiring, start / graceful stop
"""
