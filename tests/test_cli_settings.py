"""The CLI's settings file: the sync CLI's ``~/.acm.json``, parsed, changed and written."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from helpers import cli, cli_process

from aioacm.cli.adding import (
    AddRequest,
    add_namespace,
    check_endpoint,
    parse_target,
    split_spec,
)
from aioacm.cli.exits import SETTINGS, USAGE, CLIError
from aioacm.cli.settings import Entry, Settings, client_kwargs, settings_path

SYNC_CLI = "acm.command"  # python -m acm.command: the sync SDK's CLI, as its `acm` script


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("acm.aliyun.com:ea61357b-d417", ("acm.aliyun.com", "ea61357b-d417")),
        ("127.0.0.1:8080:ns-1", ("127.0.0.1:8080", "ns-1")),
        ("host:8080:a:b", ("host:8080", "a:b")),
        ("host:ns:with:colons", ("host", "ns:with:colons")),
        ("host:8080", ("host", "8080")),  # as the sync CLI: a port needs a namespace after it
        ("only-ns", ("acm.aliyun.com", "only-ns")),
        ("host:", ("host", "[default]")),
        ("host:8080:", ("host:8080", "[default]")),
        ("[::1]:8080:ns", ("[::1]:8080", "ns")),
        ("[::1]:ns", ("[::1]", "ns")),
    ],
)
def test_split_spec(text: str, expected: tuple[str, str]) -> None:
    assert split_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080:ns-1", ("127.0.0.1:8080", "ns-1", None)),
        ("127.0.0.1:8080:", ("127.0.0.1:8080", "[default]", None)),
        ("nacos://h/ns-1", ("nacos://h", "ns-1", None)),
        ("NACOS://u@h:8848,h2:8849/ns-1/", ("nacos://h:8848,h2:8849", "ns-1", "u")),
        ("nacos://me@corp@h", ("nacos://h", "[default]", "me@corp")),
        ("nacos://h:8848/public", ("nacos://h:8848", "[default]", None)),
        ("nacos://[::1]:8848/", ("nacos://[::1]:8848", "[default]", None)),
    ],
)
def test_parse_target(text: str, expected: tuple[str, str, str | None]) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("127.0.0.1:8080", "127.0.0.1:8080:NAMESPACE_ID"),
        ("host:65535", "host:65535:NAMESPACE_ID"),
        ("http://h:8080/ns", "nacos://"),
        ("nacos://", "nacos://[USER@]HOST"),
        ("nacos://@h/ns", "empty user name"),
        ("nacos://h:99999/ns", "'h:99999'"),
        ("nacos://h/bad ns", "Invalid namespace"),
    ],
)
def test_parse_target_refuses_with_the_expected_shape(text: str, hint: str) -> None:
    with pytest.raises(CLIError) as info:
        parse_target(text)
    assert info.value.code == USAGE
    assert hint in info.value.message


@pytest.mark.parametrize("endpoint", ["host", "host:1", "10.0.0.1:65535", "[::1]:8080"])
def test_check_endpoint_accepts(endpoint: str) -> None:
    assert check_endpoint(endpoint) == endpoint


@pytest.mark.parametrize(
    "endpoint", ["http://x", "h/x", "h:0", "h:99999", "h:port", "a b", "[::1", "", ":80"]
)
def test_check_endpoint_refuses(endpoint: str) -> None:
    with pytest.raises(CLIError) as info:
        check_endpoint(endpoint)
    assert info.value.code == USAGE


def _empty(tmp_path: Path) -> Settings:
    return Settings(tmp_path / ".acm.json", {"endpoints": {}}, exists=False)


def test_first_namespace_becomes_current_later_ones_do_not(tmp_path: Path) -> None:
    settings = _empty(tmp_path)
    _first, notes = add_namespace(settings, AddRequest("e:ns-1", ak="a", sk="s", alias="dev"))
    assert any("Now using" in n for n in notes)
    second, notes = add_namespace(settings, AddRequest("e:ns-2"))
    assert any("aioacm use ns-2" in n for n in notes)
    current = settings.current()
    assert current is not None
    assert current.spec == "e:ns-1"
    settings.use(second)
    current = settings.current()
    assert current is not None
    assert current.spec == "e:ns-2"
    assert settings.endpoints["e"]["namespaces"]["ns-1"]["is_current"] is False


def test_alias_rules(tmp_path: Path) -> None:
    settings = _empty(tmp_path)
    add_namespace(settings, AddRequest("e1:ns", alias="dev"))
    with pytest.raises(CLIError, match="taken"):
        add_namespace(settings, AddRequest("e2:other", alias="dev"))
    with pytest.raises(CLIError, match="invalid alias"):
        add_namespace(settings, AddRequest("e2:other", alias="a:b"))
    # no alias: the namespace id, or endpoint-namespace when the id is taken as an alias
    add_namespace(settings, AddRequest("e1:dev"))
    assert settings.endpoints["e1"]["namespaces"]["dev"]["alias"] == "e1-dev"
    # the same namespace id on another endpoint: a new entry, not an update
    add_namespace(settings, AddRequest("e1:ns2"))
    add_namespace(settings, AddRequest("e2:ns2"))
    assert settings.endpoints["e1"]["namespaces"]["ns2"]["alias"] == "ns2"
    assert settings.endpoints["e2"]["namespaces"]["ns2"]["alias"] == "e2-ns2"
    found = settings.find("e2-ns2")
    assert found is not None
    assert found.spec == "e2:ns2"
    # re-adding keeps the alias unless a new one is given
    add_namespace(settings, AddRequest("e1:ns", ak="new-ak", sk="new-sk"))
    ns = settings.endpoints["e1"]["namespaces"]["ns"]
    assert (ns["alias"], ns["ak"], ns["sk"]) == ("dev", "new-ak", "new-sk")


def test_find_by_alias_or_full_name_with_a_port(tmp_path: Path) -> None:
    settings = _empty(tmp_path)
    add_namespace(settings, AddRequest("127.0.0.1:8080:ns-1", alias="local"))
    for name in ("local", "127.0.0.1:8080:ns-1"):
        entry = settings.find(name)
        assert entry is not None
        assert (entry.endpoint, entry.namespace_id) == (
            "127.0.0.1:8080",
            "ns-1",
        )
    assert settings.find("127.0.0.1:ns-1") is None
    with pytest.raises(CLIError) as info:
        settings.resolve("nope")
    assert info.value.code == SETTINGS


def test_no_namespace_configured_or_none_current(tmp_path: Path) -> None:
    settings = _empty(tmp_path)
    with pytest.raises(CLIError, match="no namespace configured") as info:
        settings.resolve(None)
    assert info.value.code == SETTINGS
    add_namespace(settings, AddRequest("e:ns"))
    settings.endpoints["e"]["is_current"] = False
    with pytest.raises(CLIError, match="no namespace is in use"):
        settings.resolve(None)


def test_kms_settings_are_checked_and_stored_as_the_sync_cli_does(tmp_path: Path) -> None:
    settings = _empty(tmp_path)
    with pytest.raises(CLIError, match="region id"):
        add_namespace(settings, AddRequest("e:ns", ak="a", sk="s", kms=True))
    with pytest.raises(CLIError, match="AccessKey"):
        add_namespace(settings, AddRequest("e:ns", kms=True, region_id="cn-hangzhou"))
    assert settings.endpoints == {}  # a refused add changes nothing
    entry, _ = add_namespace(
        settings,
        AddRequest("e:ns", ak="a", sk="s", kms=True, region_id="cn-hangzhou", key_id="k-1"),
    )
    assert entry.endpoint_info["kms_enabled"] is True
    assert entry.endpoint_info["region_id"] == "cn-hangzhou"
    assert (entry.info["kms_ak"], entry.info["kms_secret"], entry.info["key_id"]) == (
        "a",
        "s",
        "k-1",
    )
    role, _ = add_namespace(settings, AddRequest("e:ns2", kms=True, ram_role_name="role-1"))
    assert role.info["ram_role_name"] == "role-1"


def test_client_kwargs_maps_every_setting() -> None:
    endpoint_info = {"tls": True, "kms_enabled": True, "region_id": "cn-sh", "namespaces": {}}
    info = {
        "ak": "a",
        "sk": "s",
        "kms_ak": "ka",
        "kms_secret": "ks",
        "key_id": "k",
        "ram_role_name": "role",
    }
    assert client_kwargs(Entry("e:1", "ns", endpoint_info, info)) == {
        "endpoint": "e:1",
        "namespace": "ns",
        "ak": "a",
        "sk": "s",
        "ram_role_name": "role",
        "tls_enabled": True,
        "kms_enabled": True,
        "region_id": "cn-sh",
        "key_id": "k",
        "kms_ak": "ka",
        "kms_secret": "ks",
    }


def test_client_kwargs_of_a_plain_default_namespace() -> None:
    endpoint_info = {"tls": False, "kms_enabled": False, "region_id": "r", "namespaces": {}}
    info = {"ak": None, "sk": None, "kms_ak": "unused", "key_id": None, "ram_role_name": None}
    kwargs = client_kwargs(Entry("acm.aliyun.com", "[default]", endpoint_info, info))
    assert kwargs == {"endpoint": "acm.aliyun.com", "namespace": None}


def test_client_kwargs_refuses_half_a_key_pair() -> None:
    with pytest.raises(CLIError, match="not both") as info:
        client_kwargs(Entry("e", "ns", {}, {"ak": "a", "sk": None}))
    assert info.value.code == SETTINGS


def test_save_is_atomic_owner_only_and_follows_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "acm.json"
    real.parent.mkdir()
    real.write_text('{"endpoints": {}}')
    link = tmp_path / ".acm.json"
    link.symlink_to(real)
    settings = Settings.load(link)
    add_namespace(settings, AddRequest("e:ns", ak="a", sk="secret"))
    settings.save()
    assert link.is_symlink()
    assert json.loads(real.read_text())["endpoints"]["e"]["namespaces"]["ns"]["sk"] == "secret"
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert sorted(p.name for p in real.parent.iterdir()) == ["acm.json"]  # no temporary left


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"other": 1}', "not an ACM CLI settings file"),
        ('{"endpoints": {"e": {"namespaces": {"ns": 3}}}}', "malformed"),
    ],
)
def test_unusable_settings_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / ".acm.json"
    path.write_text(content)
    with pytest.raises(CLIError, match=message) as info:
        Settings.load(path)
    assert info.value.code == SETTINGS


def test_missing_home_falls_back_to_the_account_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOME")
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: Path("/the/account/home")))
    assert settings_path() == Path("/the/account/home/.acm.json")


def _no_home(cls: type[Path]) -> Path:
    raise RuntimeError("Could not determine home directory.")


async def test_no_home_at_all_is_a_clear_settings_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HOME")
    monkeypatch.setattr(Path, "home", classmethod(_no_home))
    result = await cli("show")
    assert result.code == SETTINGS
    assert "set HOME" in result.err
    assert "Traceback" not in result.err


# -- sharing the file with the sync CLI ---------------------------------------------------------


async def _sync_cli(*argv: str, home: Path) -> str:
    result = await cli_process(*argv, home=home, cwd=home, module=SYNC_CLI)
    assert result.code == 0, result
    return result.out


@pytest.mark.skipif(sys.platform == "win32", reason="the sync CLI needs fcntl")
async def test_a_file_the_sync_cli_wrote_is_read_unchanged(cli_home: Path) -> None:
    await _sync_cli("add", "127.0.0.1:ns-1", "-a", "my-ak", "-s", "my-secret", "-n", "dev",
                    home=cli_home)  # fmt: skip
    path = cli_home / ".acm.json"
    before = path.read_bytes()

    shown = await cli("show")
    assert shown.code == 0, shown
    assert "acm.aliyun.com" in shown.out
    assert "[default]" in shown.out
    assert "dev" in shown.out
    current = await cli("current")
    assert "acm.aliyun.com" in current.out  # the sync CLI does not switch on add
    assert path.read_bytes() == before  # reading changes nothing

    used = await cli("use", "dev")
    assert used.code == 0, used
    after = json.loads(path.read_text())
    expected = json.loads(before)
    expected["endpoints"]["acm.aliyun.com"]["is_current"] = False
    expected["endpoints"]["127.0.0.1"]["is_current"] = True
    expected["endpoints"]["127.0.0.1"]["namespaces"]["ns-1"]["is_current"] = True
    assert after == expected  # only the current flags moved
    assert path.read_text() == json.dumps(expected, indent=4)  # in the sync CLI's layout
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    entry = Settings.load(path).resolve(None)
    assert client_kwargs(entry) == {
        "endpoint": "127.0.0.1",
        "namespace": "ns-1",
        "ak": "my-ak",
        "sk": "my-secret",
    }
    # and the sync CLI still reads it after we wrote it
    out = await _sync_cli("current", home=cli_home)
    assert "ns-1" in out
    assert "my-ak" in out


@pytest.mark.skipif(sys.platform == "win32", reason="the sync CLI needs fcntl")
async def test_a_file_we_wrote_is_read_by_the_sync_cli(cli_home: Path) -> None:
    added = await cli(
        "add", "127.0.0.1:1:ns-9", "-a", "ak-9", "-s", "sk-9", "-n", "nine", "--tls",
        "--kms", "-r", "cn-shanghai", "-k", "key-9", "-role", "role-9",
    )  # fmt: skip
    assert added.code == 0, added
    out = await _sync_cli("current", home=cli_home)
    for value in ("127.0.0.1:1", "ns-9", "nine", "ak-9", "sk-9", "cn-shanghai", "key-9", "role-9"):
        assert value in out
    shown = await _sync_cli("show", home=cli_home)
    assert "nine" in shown
