"""The command line: the sync CLI's subcommands and flags, plus ``watch`` and ``server``."""

from __future__ import annotations

import argparse

from .._version import __version__
from .exits import EXIT_CODES

__all__ = ["build_parser"]

_NS_HELP = (
    "namespace to use: its alias, or ENDPOINT:NAMESPACE_ID (ACM) or"
    " nacos://[USER@]HOST[:PORT]/NAMESPACE_ID (Nacos), added or not (default: the one in use)"
)


def _epilog() -> str:
    codes = "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES)
    return (
        "Settings live in ~/.acm.json (the sync 'acm' CLI's file, shared with it).\n\n"
        f"exit codes:\n{codes}"
    )


def _namespace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", dest="namespace", metavar="NAMESPACE", default=None, help=_NS_HELP)


def build_parser() -> argparse.ArgumentParser:
    """The ``aioacm`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="aioacm",
        description="Manage the config items of Alibaba Cloud ACM and Nacos servers.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"aioacm {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="log requests on stderr; show tracebacks"
    )
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")

    add = sub.add_parser(
        "add",
        help="add a namespace, or update one",
        description="Add a namespace of ACM or Nacos to ~/.acm.json, or update it if it is there.",
        epilog="examples: aioacm add acm.aliyun.com:ea61357b-0000 -a AK -s SK -n dev\n"
        "          aioacm add 127.0.0.1:8080:ns-1 -n local\n"
        "          aioacm add nacos://nacos@127.0.0.1:8848/ns-1 -n nacos   (asks the password)\n"
        "          aioacm add nacos://10.0.0.1,10.0.0.2:8848/ -n prod      (public namespace)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add.add_argument(
        "namespace",
        metavar="TARGET",
        help="ACM: ENDPOINT:NAMESPACE_ID (ENDPOINT is HOST or HOST:PORT, acm.aliyun.com when"
        " left out); Nacos: nacos://[USER@]HOST[:PORT][,HOST[:PORT]...]/NAMESPACE_ID (port"
        " 8848 when left out; no NAMESPACE_ID: the public namespace)",
    )
    add.add_argument(
        "--password",
        help="the Nacos user's password (default: $AIOACM_NACOS_PASSWORD, else asked on the"
        " terminal; the prompt keeps it out of the shell's history)",
    )
    add.add_argument("-a", dest="ak", help="AccessKey (not needed with a RAM role)")
    add.add_argument("-s", dest="sk", help="SecretKey (not needed with a RAM role)")
    add.add_argument("-n", dest="alias", help='a short name for the namespace (no ":")')
    add.add_argument("--tls", action="store_true", help="talk HTTPS to the endpoint's servers")
    add.add_argument("--kms", action="store_true", help="decrypt cipher- items with KMS")
    add.add_argument("-ka", dest="kms_ak", help="AccessKey for KMS (default: -a)")
    add.add_argument("-ks", dest="kms_secret", help="SecretKey for KMS (default: -s)")
    add.add_argument("-k", dest="key_id", help="KMS key id (to encrypt cipher- items)")
    add.add_argument("-r", dest="region_id", help="Alibaba Cloud region id (needed with --kms)")
    add.add_argument("-role", dest="ram_role_name", help="take credentials from this RAM role")
    add.add_argument(
        "--kms-endpoint", metavar="HOST[:PORT]", help="KMS endpoint (default: by region)"
    )
    add.add_argument(
        "--kms-protocol", choices=("https", "http"), help="KMS protocol (default: https)"
    )
    add.add_argument(
        "--ram-metadata-url",
        metavar="URL",
        help="ECS metadata service for the RAM role (default: http://100.100.100.200)",
    )

    use = sub.add_parser("use", help="switch to a namespace", description="Switch to a namespace.")
    use.add_argument("namespace", metavar="NAMESPACE", help="alias or ENDPOINT:NAMESPACE_ID")

    sub.add_parser(
        "current",
        help="show the namespace in use",
        description="Show the namespace in use, its endpoint and keys (secret keys masked).",
    )
    sub.add_parser(
        "show",
        help="show every namespace",
        description="Show every namespace of ~/.acm.json; * marks the one in use.",
    )

    listing = sub.add_parser("list", help="list dataIds", description="List GROUP/DATA_ID lines.")
    listing.add_argument("-g", dest="group", help="only this group")
    listing.add_argument("-p", dest="prefix", help="only dataIds starting with this")
    _namespace_option(listing)

    pull = sub.add_parser(
        "pull",
        help="print one config item",
        description="Print one config item's content on stdout, exactly as stored.",
        epilog="example: aioacm pull ACM/jdbc.properties > jdbc.properties",
    )
    pull.add_argument("data_id", metavar="[GROUP/]DATA_ID", help="the item (group: DEFAULT_GROUP)")
    _namespace_option(pull)

    push = sub.add_parser(
        "push",
        help="publish one config item",
        description="Publish one config item from a file, or from stdin.",
        epilog="example: cat jdbc.properties | aioacm push ACM/jdbc.properties",
    )
    push.add_argument("data_id", metavar="[GROUP/]DATA_ID", help="the item (group: DEFAULT_GROUP)")
    push.add_argument("-f", dest="file", help="the file to publish (default: stdin)")
    _namespace_option(push)

    for name, verb in (("export", "to"), ("import", "from")):
        transfer = sub.add_parser(
            name,
            help=f"copy every item {verb} a folder or zip file",
            description=(
                f"Copy every item of a namespace {verb} a folder (-d) or zip file (-f):"
                " DEFAULT_GROUP items as DATA_ID, others as GROUP/DATA_ID."
            ),
        )
        transfer.add_argument(
            "-f",
            dest="file",
            help="the zip file (default: ENDPOINT-NAMESPACE_ID.zip); ignored with -d",
        )
        transfer.add_argument("-d", dest="dir", help="the folder")
        _namespace_option(transfer)
        if name == "export":
            delete_help = "delete files and folders of -d that are not in the namespace"
        else:
            delete_help = "delete items of the namespace that are not in the source"
        transfer.add_argument(
            "--delete",
            action="store_true",
            help=delete_help + " (only once every item was copied; names starting with '.'"
            " are left alone)",
        )
        transfer.add_argument("--force", action="store_true", help="delete without asking first")

    copying = sub.add_parser(
        "copy",
        help="copy every item of a namespace to another (ACM or Nacos)",
        description=(
            "Copy every item of namespace SOURCE to namespace TARGET exactly as stored: content,\n"
            "config type, and the ciphertext and encrypted data key of cipher- items (no KMS\n"
            "needed). Then read each copied item back from TARGET and compare."
        ),
        epilog="example: aioacm copy prod nacos://127.0.0.1:8848/prod --dry-run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name in ("source", "target"):
        copying.add_argument(
            name,
            metavar=name.upper(),
            help="alias, ENDPOINT:NAMESPACE_ID or nacos://[USER@]HOST[:PORT]/NAMESPACE_ID",
        )
    copying.add_argument(
        "--dry-run",
        action="store_true",
        help="list each item as new, changed, same or only-in-target; change nothing",
    )
    copying.add_argument(
        "--delete",
        action="store_true",
        help="delete items of TARGET that SOURCE does not have (only once every item was"
        " copied and verified)",
    )
    copying.add_argument("--force", action="store_true", help="delete without asking first")
    copying.add_argument("-g", dest="group", help="only this group (on both sides)")
    copying.add_argument("-p", dest="prefix", help="only dataIds starting with this (both sides)")
    copying.add_argument("--json", action="store_true", help="the outcome as one JSON object")

    watch = sub.add_parser(
        "watch",
        help="print changes of config items until Ctrl-C",
        description="Print the current value of each item, then every change, until Ctrl-C.",
    )
    watch.add_argument("data_ids", metavar="[GROUP/]DATA_ID", nargs="+", help="the items to watch")
    watch.add_argument("--json", action="store_true", help="one JSON object a line")
    _namespace_option(watch)

    server = sub.add_parser(
        "server",
        help="run the bundled ACM-compatible server",
        description="Run the bundled server (see 'aioacm server --help').",
        add_help=False,
    )
    server.add_argument("server_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser
