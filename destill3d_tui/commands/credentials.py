"""`destill3d-tui config credentials set|delete|list`: platform credentials, never echoed."""

from __future__ import annotations

import argparse
import getpass
import sys

from .context import CommandContext


def register(config_sub: argparse._SubParsersAction) -> None:
    parser = config_sub.add_parser("credentials", help="platform API keys and tokens (keyring)")
    sub = parser.add_subparsers(dest="credentials_command", metavar="COMMAND")
    parser.set_defaults(handler=None, group_parser=parser)

    set_ = sub.add_parser("set", help="store a credential (read from the terminal or stdin, never argv)")
    set_.add_argument("platform")
    set_.add_argument("--field", default="token", help="token (default), oauth, username, session")
    set_.add_argument("--allow-plaintext-credentials", action="store_true",
                      help="without a secure keyring, write a 0600 plaintext file instead")
    set_.set_defaults(handler=set_cmd)

    delete = sub.add_parser("delete", help="remove a stored credential")
    delete.add_argument("platform")
    delete.add_argument("--field", default="token")
    delete.set_defaults(handler=delete_cmd)

    list_ = sub.add_parser("list", help="which credentials are set and where from (never the values)")
    list_.add_argument("--json", action="store_true", dest="json_output")
    list_.set_defaults(handler=list_cmd)


def _read_secret(prompt: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().strip()


def set_cmd(args: argparse.Namespace, ctx: CommandContext) -> int:
    from ..engine.acquire import credentials

    value = _read_secret(f"{args.platform} {args.field}: ")
    where = credentials.set_credential(args.platform, value, args.field,
                                       allow_plaintext=args.allow_plaintext_credentials)
    if where != "keyring":
        ctx.err.print(f"warning: stored in PLAINTEXT at {where} (readable only by you)", markup=False)
    else:
        ctx.err.print(f"{args.platform} {args.field} stored in the system keyring", markup=False)
    return 0


def delete_cmd(args: argparse.Namespace, ctx: CommandContext) -> int:
    from ..engine.acquire import credentials

    removed = credentials.delete_credential(args.platform, args.field)
    ctx.err.print(f"{args.platform} {args.field}: {'removed' if removed else 'nothing stored'}", markup=False)
    return 0 if removed else 1


def list_cmd(args: argparse.Namespace, ctx: CommandContext) -> int:
    from ..engine.acquire import credentials

    entries = credentials.list_entries()
    secure, backend = credentials.keyring_is_secure()
    if ctx.json_output:
        for entry in entries:
            ctx.emit_json(entry.__dict__)
        return 0
    ctx.out.print(f"keyring backend: {backend} ({'secure' if secure else 'NOT secure: env vars or opt-in file'})",
                  markup=False)
    for entry in entries:
        ctx.out.print(f"{entry.platform:14} {entry.field:9} {entry.source}", markup=False)
    if not entries:
        ctx.out.print("no credentials set", markup=False)
    return 0
