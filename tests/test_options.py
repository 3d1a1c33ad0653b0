"""Options: the sync SDK's names, strict types, atomic updates, no secret in repr."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from aioacm import ACMClient, InvalidOptionError, InvalidParameterError, StaticCredentialsProvider
from aioacm.options import OPTION_NAMES, Options

SYNC_SDK_OPTION_NAMES = {
    "default_timeout", "tls_enabled", "auth_enabled", "cai_enabled", "pulling_timeout",
    "pulling_config_size", "callback_thread_num", "failover_base", "snapshot_base", "app_name",
    "kms_enabled", "region_id", "kms_ak", "kms_secret", "key_id", "no_snapshot", "ram_role_name",
}  # fmt: skip


def test_every_sync_sdk_option_name_is_known() -> None:
    assert set(OPTION_NAMES) >= SYNC_SDK_OPTION_NAMES


def test_sync_sdk_defaults() -> None:
    options = Options()
    assert (options.default_timeout, options.pulling_timeout) == (3, 30)
    assert (options.pulling_config_size, options.callback_thread_num) == (3000, 10)
    assert (options.failover_base, options.snapshot_base) == ("acm-data/data", "acm-data/snapshot")
    assert options.app_name == "ACM-SDK-Python"
    assert options.cai_enabled is True
    assert options.tls_enabled is options.no_snapshot is options.kms_enabled is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("default_timeout", "3"),
        ("default_timeout", 0),
        ("default_timeout", -1),
        ("default_timeout", True),
        ("tls_enabled", 1),
        ("tls_enabled", "yes"),
        ("pulling_config_size", 0),
        ("pulling_config_size", 10001),
        ("pulling_config_size", 2.5),
        ("callback_thread_num", 0),
        ("failover_base", 3),
        ("failover_base", ""),
        ("app_name", ""),
        ("app_name", "bad\nname"),
        ("kms_ak", 5),
    ],
)
def test_bad_values_raise(name: str, value: Any) -> None:
    with pytest.raises(InvalidOptionError, match=name):
        Options.validate({name: value})


def test_unknown_option_raises_with_the_known_names() -> None:
    with pytest.raises(InvalidOptionError, match=r"unknown option.*no_such_thing") as info:
        Options.validate({"no_such_thing": 1})
    assert "default_timeout" in str(info.value)
    # migrating code that catches the sync SDK's root, or a plain TypeError/ValueError, still works
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, ValueError)


def test_update_is_all_or_nothing() -> None:
    options = Options()
    with pytest.raises(InvalidOptionError):
        options.update({"default_timeout": 9, "tls_enabled": "no"})
    assert options.default_timeout == 3


def test_update_reports_changes_and_normalises() -> None:
    options = Options()
    assert options.update({"default_timeout": 5, "app_name": "ACM-SDK-Python"}) == {
        "default_timeout": 5.0
    }
    assert isinstance(options.default_timeout, float)


def test_repr_hides_kms_secret() -> None:
    options = Options()
    options.update({"kms_secret": "very-secret-value", "kms_ak": "visible-ak"})
    assert "very-secret-value" not in repr(options)
    assert "visible-ak" in repr(options)


async def test_client_accepts_options_in_constructor_and_set_options() -> None:
    client = ACMClient("127.0.0.1:1", cai_enabled=False, default_timeout=1.5)
    assert client.options.default_timeout == 1.5
    client.set_options(pulling_timeout=5, app_name="svc")
    assert (client.options.pulling_timeout, client.options.app_name) == (5, "svc")
    with pytest.raises(InvalidOptionError):
        client.set_options(bogus=True)
    with pytest.raises(InvalidOptionError):
        ACMClient("127.0.0.1:1", timeout=3)
    await client.aclose()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"endpoint": ""},
        {"endpoint": "http://acm.aliyun.com"},
        {"endpoint": "host/path"},
        {"endpoint": None},
        {"endpoint": "h", "namespace": "../etc"},
        {"endpoint": "h", "namespace": "a/b"},
        {"endpoint": "h", "ak": "only-ak"},
        {"endpoint": "h", "sk": "only-sk"},
        {"endpoint": "h", "unit_name": "bad/unit"},
        {"endpoint": "h", "session": object()},
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameterError):
        ACMClient(**kwargs)


def test_kms_without_the_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "alibabacloud_kms20160120", None)  # as if not installed
    with pytest.raises(InvalidOptionError, match=r"aioacm\[kms\]"):
        ACMClient("h", kms_enabled=True, region_id="cn-hangzhou")
    client = ACMClient("h")
    with pytest.raises(InvalidOptionError, match=r"aioacm\[kms\]"):
        client.set_options(kms_enabled=True)
    assert client.options.kms_enabled is False


def test_kms_and_ram_role_are_accepted_with_the_extra() -> None:
    client = ACMClient("h", ram_role_name="role", kms_enabled=True, region_id="cn-hangzhou")
    assert client.options.ram_role_name == "role"
    assert client.options.kms_enabled is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ram_role_name", "a/b"),
        ("ram_role_name", ".."),
        ("ram_role_name", "role?x=1"),
        ("ram_role_name", "x" * 65),
        ("ram_role_name", 3),
        ("ram_metadata_url", "ftp://100.100.100.200"),
        ("ram_metadata_url", "http://h/?a=b"),
        ("ram_metadata_url", "100.100.100.200"),
        ("kms_endpoint", "https://kms.example.com"),
        ("kms_endpoint", "kms.example.com/path"),
        ("kms_protocol", "ftp"),
        ("kms_protocol", None),
    ],
)
def test_bad_ram_and_kms_values_raise(name: str, value: Any) -> None:
    with pytest.raises(InvalidOptionError, match=name):
        Options.validate({name: value})


def test_ram_and_kms_values_are_normalised() -> None:
    checked = Options.validate(
        {
            "ram_metadata_url": "http://127.0.0.1:8080/",
            "kms_endpoint": "127.0.0.1:9443",
            "kms_protocol": "HTTP",
            "ram_role_name": "",
            "region_id": None,
            "key_id": None,
        }
    )
    assert checked == {
        "ram_metadata_url": "http://127.0.0.1:8080",
        "kms_endpoint": "127.0.0.1:9443",
        "kms_protocol": "http",
        "ram_role_name": None,
        "region_id": "",
        "key_id": "",
    }


def test_ram_role_conflicts_with_a_credentials_provider() -> None:
    provider = StaticCredentialsProvider("ak", "sk")
    with pytest.raises(InvalidOptionError, match="ram_role_name"):
        ACMClient("h", ram_role_name="role", credentials=provider)
    client = ACMClient("h", credentials=provider)
    with pytest.raises(InvalidOptionError, match="ram_role_name"):
        client.set_options(ram_role_name="role")
