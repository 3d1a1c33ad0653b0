"""Table tests for the pure wire grammar and signing (vectors from PROTOCOL.md)."""

from __future__ import annotations

import pytest

from aioacm import InvalidParameterError
from aioacm.auth import Credentials, sign
from aioacm.dialects.acm import (
    MAX_CONTENT_BYTES,
    PROBE_FIELD,
    build_poll_response,
    build_probe,
    content_md5,
    encode_content,
    encode_form,
    encode_probe_record,
    normalize_group,
    parse_poll_response,
    parse_probe,
    probe_form_body,
    sign_headers,
    sign_string,
    validate_data_id,
)
from aioacm.keys import DEFAULT_GROUP, cache_key, parse_cache_key, validate_namespace
from aioacm.servers import parse_server_list

TS = "1700000000000"


@pytest.mark.parametrize(
    ("tenant", "group", "text", "signature"),
    [
        ("ns1", "DEFAULT_GROUP", f"ns1+DEFAULT_GROUP+{TS}", "ifxKQwWm5KOwtddSoYXjC28Ad9I="),
        (None, "DEFAULT_GROUP", f"DEFAULT_GROUP+{TS}", "pIO4HpuG2n9bvX2yxNA9giMR79E="),
        ("ns1", None, f"ns1+{TS}", "ssQ6cpI5/XDDqQTgTrZio9ik7hg="),
    ],
)
def test_signing_vectors(tenant: str | None, group: str | None, text: str, signature: str) -> None:
    assert sign_string(tenant, group, TS) == text
    assert sign("secret", text) == signature
    headers = sign_headers(Credentials("ak", "secret"), tenant, group, int(TS))
    assert headers == {"Spas-AccessKey": "ak", "timeStamp": TS, "Spas-Signature": signature}


def test_bare_timestamp_vector_and_unsigned_poll() -> None:
    assert sign("secret", TS) == "GkxmUVZIPEAQC5SikuOBv4kZAhc="
    # the sync SDK sends no signature when neither tenant nor group is in the request
    headers = sign_headers(Credentials("ak", "secret", "tok"), None, None, int(TS))
    assert headers == {"Spas-AccessKey": "ak", "timeStamp": TS, "Spas-SecurityToken": "tok"}


def test_credentials_repr_hides_secrets() -> None:
    text = repr(Credentials("AKID", "the-secret", "the-token"))
    assert "AKID" in text
    assert "the-secret" not in text
    assert "the-token" not in text


@pytest.mark.parametrize(
    ("fields", "encoded"),
    [
        ([("content", "k=v\n中文")], b"content=k%3Dv%0A%D6%D0%CE%C4"),
        ([("dataId", "a.b:c-d_e"), ("group", "G")], b"dataId=a.b%3Ac-d_e&group=G"),
        ([("content", "a b+c&d")], b"content=a+b%2Bc%26d"),
        ([("content", "")], b"content="),
    ],
)
def test_form_encoding_is_gbk(fields: list[tuple[str, str]], encoded: bytes) -> None:
    assert encode_form(fields) == encoded


@pytest.mark.parametrize(
    ("content", "md5"),
    [
        ("a=中文", "df42f61067367fb6409ae114a96ea8c8"),
        ("", "d41d8cd98f00b204e9800998ecf8427e"),
        (None, ""),
    ],
)
def test_md5_over_gbk(content: str | None, md5: str) -> None:
    assert content_md5(content) == md5


def test_md5_is_not_utf8() -> None:
    assert content_md5("a=中文") != "8a0d4d72032bf9ad1131b03f9936d494"


@pytest.mark.parametrize(
    ("content", "encoded"),
    [("中文", "中文".encode("gbk")), (b"bytes \xe4\xb8\xad", "bytes 中".encode("gbk")), ("", b"")],
)
def test_encode_content(content: str | bytes, encoded: bytes) -> None:
    assert encode_content(content) == encoded


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("emoji 😀", "GBK"),
        (None, "None"),
        (b"\xff\xfe", "UTF-8"),
        ("x" * (MAX_CONTENT_BYTES + 1), "at most"),
        (123, "str"),
    ],
)
def test_encode_content_refuses(content: object, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        encode_content(content)


def test_content_at_the_limit_is_accepted() -> None:
    assert len(encode_content("x" * MAX_CONTENT_BYTES)) == MAX_CONTENT_BYTES


@pytest.mark.parametrize("data_id", ["a", "com.alibaba:app.properties", "A-b_c.1:2", "x" * 256])
def test_valid_data_ids(data_id: str) -> None:
    assert validate_data_id(data_id) == data_id


@pytest.mark.parametrize(
    "data_id", ["", "a/b", "a+b", "中文", "a b", "x" * 257, "a\x00", None, 1, "é", "../x"]
)
def test_invalid_data_ids(data_id: object) -> None:
    with pytest.raises(InvalidParameterError):
        validate_data_id(data_id)


@pytest.mark.parametrize(
    ("group", "expected"),
    [(None, DEFAULT_GROUP), ("", DEFAULT_GROUP), ("  ", DEFAULT_GROUP), (" g1 ", "g1")],
)
def test_group_normalisation(group: str | None, expected: str) -> None:
    assert normalize_group(group) == expected


@pytest.mark.parametrize("group", ["a/b", "a+b", "中", "x" * 129, 5])
def test_invalid_groups(group: object) -> None:
    with pytest.raises(InvalidParameterError):
        normalize_group(group)


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [(None, ""), ("", ""), ("60be4ae8-0000-4f5e-9f4c-1d2e3f4a5b6c", None), ("ns_1.a", None)],
)
def test_valid_namespaces(namespace: str | None, expected: str | None) -> None:
    assert validate_namespace(namespace) == (namespace if expected is None else expected)


@pytest.mark.parametrize(
    "namespace", ["..", "a/..", "a/b", "a\\b", "a..b", "ns+1", "x" * 129, "a\x00", "名字", 7]
)
def test_invalid_namespaces(namespace: object) -> None:
    with pytest.raises(InvalidParameterError):
        validate_namespace(namespace)


def test_cache_key_round_trip() -> None:
    key = cache_key("d", "g", "")
    assert key == "d+g+"
    assert parse_cache_key(key) == ("d", "g", "")
    assert parse_cache_key(cache_key("d", "g", "ns")) == ("d", "g", "ns")


@pytest.mark.parametrize(
    "entries",
    [
        [("d1", "g", "", "ns"), ("d2", "g", "abc", "")],
        [("a:b.c-d_e", "G:1", "df42f61067367fb6409ae114a96ea8c8", "ns:1")],
        [(f"key.{i}", "DEFAULT_GROUP", "", "bench") for i in range(50)],
        [],
    ],
)
def test_probe_body_from_encoded_records_is_the_form_encoding(
    entries: list[tuple[str, str, str, str]],
) -> None:
    records = [encode_probe_record(*entry) for entry in entries]
    assert probe_form_body(records) == encode_form([(PROBE_FIELD, build_probe(entries))])


def test_probe_layout() -> None:
    probe = build_probe([("d1", "g", "", "ns"), ("d2", "g", "abc", "")])
    assert probe == "d1\x02g\x02\x02ns\x01d2\x02g\x02abc\x02\x01"
    assert parse_probe(probe) == [("d1", "g", "", "ns"), ("d2", "g", "abc", "")]
    assert parse_probe("d\x02g\x02m\x01") == [("d", "g", "m", "")]
    with pytest.raises(ValueError, match="fields"):
        parse_probe("d\x02g\x01")


@pytest.mark.parametrize(
    ("body", "keys"),
    [
        (b"", []),
        (b"d1%02g%01", [("d1", "g", "")]),
        (b"d1%02g%02ns%01d2%02g%01\n", [("d1", "g", "ns"), ("d2", "g", "")]),
        (b"a+b%02g%01%01", [("a b", "g", "")]),
        (b"garbage", []),
        (b"%02g%01d%02%01", []),
        (b"\xff\xfe%01", []),
    ],
)
def test_parse_poll_response(body: bytes, keys: list[tuple[str, str, str]]) -> None:
    assert parse_poll_response(body) == keys


def test_poll_response_round_trip() -> None:
    keys = [("d1", "g", "ns"), ("d2", "DEFAULT_GROUP", "")]
    assert parse_poll_response(build_poll_response(keys).encode()) == keys


@pytest.mark.parametrize(
    ("text", "default_port", "servers"),
    [
        (
            "1.1.1.1\n2.2.2.2:9090\n\n  3.3.3.3  \n",
            8080,
            [("1.1.1.1", 8080), ("2.2.2.2", 9090), ("3.3.3.3", 8080)],
        ),
        ("host:bad\nh2", 443, [("h2", 443)]),
        ("[::1]:8081\n[::2]", 8080, [("::1", 8081), ("::2", 8080)]),
        ("h:0\nh:70000\n", 8080, []),
        ("", 8080, []),
        # an error page or a hostile answer never becomes a server (issue 7 fault matrix)
        ("<html>\n<h1>Service Unavailable</h1>\n</html>", 8080, []),
        (
            "evil.example/steal?x=1\nhost name:80\nh:+80\nh:\u0668\u0660\nh:\n:::\n[::1]x\n"
            "user@h\nok.example:81\nfe80::1%eth0",
            8080,
            [("ok.example", 81)],
        ),
    ],
)
def test_parse_server_list(text: str, default_port: int, servers: list[tuple[str, int]]) -> None:
    assert parse_server_list(text, default_port) == servers
