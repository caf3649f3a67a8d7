"""Nexxus: a self-hosted, real-time synchronization backend.

Subpackages:
  core       models, schemas, the FilterQuery and JsonPatch DSLs, errors, config, ports
  adapters   database (sqlite, postgres, elasticsearch, opensearch), bus (nats), store (redis)
  auth       passwords, tokens, access rules
  rpc        the gRPC boundary: error mapping, interceptors
  api, writer, router, transport   one package per service
  devserver  `nexxus dev`: real nats-server, Valkey and Envoy started from their wheels
"""

__version__ = "0.1.0"
