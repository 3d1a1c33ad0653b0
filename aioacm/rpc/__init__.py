"""Nacos's gRPC protocol (Nacos 2.x and 3.x): the two messages on the wire (``codec``), the
connection a client owns (``connection``), its transport (``transport``) and the change feed
that server pushes drive (``feed``).

Only ``codec`` is imported without grpcio; the rest import ``grpc`` and are loaded when a
client first speaks gRPC.
"""
