"""The hand-written codec of Nacos's two gRPC messages, checked against the protobuf runtime
(messages built from descriptors at run time: the field numbers of ``nacos_grpc_service.proto``),
and the pure helpers of the gRPC dialect."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given
from hypothesis import strategies as st

from aioacm.dialects.nacos_grpc import grpc_sign_resource
from aioacm.rpc import codec
from aioacm.rpc.connection import encode_request


def _payload_class() -> Any:
    pool = descriptor_pool.DescriptorPool()
    any_file = descriptor_pb2.FileDescriptorProto()
    any_pb2.DESCRIPTOR.CopyToProto(any_file)
    pool.Add(any_file)
    proto = descriptor_pb2.FileDescriptorProto(
        name="nacos_test.proto", syntax="proto3", dependency=["google/protobuf/any.proto"]
    )
    string, message, optional, repeated = 9, 11, 1, 3
    metadata = proto.message_type.add(name="Metadata")
    metadata.field.add(name="type", number=3, type=string, label=optional)
    metadata.field.add(name="clientIp", number=8, type=string, label=optional)
    entry = metadata.nested_type.add(name="HeadersEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=string, label=optional)
    entry.field.add(name="value", number=2, type=string, label=optional)
    metadata.field.add(
        name="headers", number=7, type=message, label=repeated, type_name=".Metadata.HeadersEntry"
    )
    payload = proto.message_type.add(name="Payload")
    payload.field.add(
        name="metadata", number=2, type=message, label=optional, type_name=".Metadata"
    )
    payload.field.add(
        name="body", number=3, type=message, label=optional, type_name=".google.protobuf.Any"
    )
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("Payload"))


Payload = _payload_class()
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@given(type_name=text, headers=st.dictionaries(text, text, max_size=4), ip=text, value=text)
def test_encoding_is_what_protobuf_reads(
    type_name: str, headers: dict[str, str], ip: str, value: str
) -> None:
    data = codec.encode(type_name, {"content": value, "none": None}, headers, ip)
    parsed = Payload()
    parsed.ParseFromString(data)
    assert parsed.metadata.type == type_name
    assert dict(parsed.metadata.headers) == headers
    assert parsed.metadata.clientIp == ip
    assert parsed.body.type_url == ""
    assert json.loads(parsed.body.value) == {"content": value}  # None left out


@given(type_name=text, headers=st.dictionaries(text, text, max_size=4), ip=text, value=text)
def test_decoding_reads_what_protobuf_writes(
    type_name: str, headers: dict[str, str], ip: str, value: str
) -> None:
    built = Payload()
    built.metadata.type = type_name
    built.metadata.clientIp = ip
    for name, header in headers.items():
        built.metadata.headers[name] = header
    built.body.type_url = "ignored"
    built.body.value = json.dumps({"md5": value, "resultCode": 200}).encode()
    message = codec.decode(built.SerializeToString())
    assert (message.type, dict(message.headers), message.client_ip) == (type_name, headers, ip)
    assert message.body == {"md5": value, "resultCode": 200}


def test_the_same_bytes_as_protobuf_for_a_request() -> None:
    built = Payload()
    built.metadata.type = "ConfigQueryRequest"
    built.metadata.headers["accessToken"] = "t0k"
    built.body.value = b'{"dataId":"a","group":"G","tenant":""}'
    ours = codec.encode_payload(
        "ConfigQueryRequest", b'{"dataId":"a","group":"G","tenant":""}', {"accessToken": "t0k"}
    )
    assert ours == built.SerializeToString()


def test_unknown_fields_and_wire_types_are_skipped() -> None:
    built = Payload()
    built.metadata.type = "HealthCheckResponse"
    built.body.value = b'{"resultCode":200}'
    extra = bytes([(9 << 3) | 0, 150, 1]) + bytes([(10 << 3) | 5, 1, 2, 3, 4])
    assert codec.decode(built.SerializeToString() + extra).body == {"resultCode": 200}


@pytest.mark.parametrize(
    "data",
    [b"\x12\x05ab", b"\x12", b"\x1b", b"\x1a\x03\x12\x01{"],
    ids=["short-field", "short-length", "group-wire-type", "body-not-json"],
)
def test_malformed_payloads_are_codec_errors(data: bytes) -> None:
    with pytest.raises(codec.CodecError):
        codec.decode(data)


def test_a_message_repr_shows_no_body_or_headers() -> None:
    message = codec.decode(codec.encode("ConfigQueryResponse", {"content": "s3cret"}, {"t": "x"}))
    assert repr(message) == "Message('ConfigQueryResponse')"


def test_requests_carry_a_request_id_and_empty_headers_in_the_body() -> None:
    body = codec.decode(encode_request("ConfigQueryRequest", b'{"dataId":"a"}', {}, "7")).body
    assert body == {"requestId": "7", "headers": {}, "dataId": "a"}
    empty = codec.decode(encode_request("HealthCheckRequest", b"{}", {}, "8")).body
    assert empty == {"requestId": "8", "headers": {}}


@pytest.mark.parametrize(
    ("tenant", "group", "resource"),
    [("ns", "G", "ns+G"), (None, "G", "G"), ("ns", None, "ns"), (None, None, ""), ("", "", "")],
)
def test_grpc_signature_resource(tenant: str | None, group: str | None, resource: str) -> None:
    assert grpc_sign_resource(tenant, group) == resource
