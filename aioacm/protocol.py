"""Kept for code that imported ACM's grammar from here before it moved.

ACM's wire facts live in ``aioacm.dialects.acm``, the key helpers in ``aioacm.keys``, the
server-list parser in ``aioacm.servers``. New code imports from there.
"""

from __future__ import annotations

from .dialects.acm import (
    MAX_CONTENT_BYTES,
    PROBE_FIELD,
    build_poll_response,
    build_probe,
    content_md5,
    decode_content,
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
from .keys import DEFAULT_GROUP, cache_key, parse_cache_key, validate_namespace
from .servers import parse_server_list

__all__ = [
    "DEFAULT_GROUP",
    "MAX_CONTENT_BYTES",
    "PROBE_FIELD",
    "build_poll_response",
    "build_probe",
    "cache_key",
    "content_md5",
    "decode_content",
    "encode_content",
    "encode_form",
    "encode_probe_record",
    "normalize_group",
    "parse_cache_key",
    "parse_poll_response",
    "parse_probe",
    "parse_server_list",
    "probe_form_body",
    "sign_headers",
    "sign_string",
    "validate_data_id",
    "validate_namespace",
]
