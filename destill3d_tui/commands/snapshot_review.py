"""`snapshot accept|reject|unreview|label|unlabel|tag|untag|undo|history|order|teach|apply`.

The CLI twins of the app's review keys (``d3d.review``). Each decision takes snapshot ids (or
unique prefixes) and/or the filters ``db query`` takes (``--query`` for typed filter text such as
``"format:stl label:chair"``, or the flags); with filters it applies to every snapshot they
select. Every change is recorded (who, when, the value before) and ``snapshot undo`` reverts the
latest. ``--json`` prints one JSON object per line.
"""

from __future__ import annotations

import argparse
from typing import Any

from .context import CommandContext
from .filter_args import FILTER_DESTS, add_filter_arguments

_DECISIONS = {
    "accept": "mark snapshots accepted",
    "reject": "mark snapshots rejected, with a reason",
    "unreview": "clear the decision (back to unreviewed)",
    "label": "set a person's label (kept over any model's)",
    "unlabel": "remove a person's label (the model's applies again)",
    "tag": "add tags",
    "untag": "remove tags a person added",
}


def register(sub: argparse._SubParsersAction) -> None:
    """Adds the review subcommands to ``snapshot``."""
    for name, text in _DECISIONS.items():
        parser = sub.add_parser(name, help=text)
        if name == "label":
            parser.add_argument("new_label", metavar="LABEL")
        if name in ("tag", "untag"):
            parser.add_argument("tag_names", metavar="TAG", help="a tag, or several separated by commas")
        parser.add_argument("ids", nargs="*", metavar="ID", help="snapshot ids or unique prefixes")
        if name == "reject":
            parser.add_argument("--reason", required=True,
                                help="one of: broken geometry, off-topic, duplicate, licence, low quality, other "
                                     "(or your own words)")  # fmt: skip
        _add_selection(parser)
        parser.add_argument("--json", action="store_true", dest="json_output")
        parser.set_defaults(handler=run_decision, decision=name)

    undo = sub.add_parser("undo", help="revert your latest review action (recorded as an action itself)")
    undo.add_argument("--action", type=int, dest="action_id", metavar="N", help="this action instead of the latest")
    undo.add_argument("--any-user", action="store_true", help="the latest action by anyone, not only yours")
    undo.add_argument("--json", action="store_true", dest="json_output")
    undo.set_defaults(handler=run_undo)

    history = sub.add_parser("history", help="recorded review changes (of one snapshot, or all), newest first")
    history.add_argument("snapshot_id", nargs="?", metavar="ID")
    history.add_argument("--limit", type=int, default=50)
    history.add_argument("--json", action="store_true", dest="json_output")
    history.set_defaults(handler=run_history)

    order = sub.add_parser("order", help="unreviewed snapshots, what most needs a person first")
    _add_selection(order)
    order.add_argument("--limit", type=int, default=50)
    order.add_argument("--no-duplicates", action="store_true", help="skip the near-duplicate search (faster)")
    order.add_argument("--json", action="store_true", dest="json_output")
    order.set_defaults(handler=run_order)

    teach = sub.add_parser("teach", help="a few-shot class from snapshots a person labelled; suggest the nearest")
    teach.add_argument("name", metavar="LABEL")
    teach.add_argument("ids", nargs="*", metavar="ID", help="examples (default: every snapshot labelled LABEL)")
    teach.add_argument("--k", type=int, default=20, help="how many nearest snapshots to suggest (default 20)")
    teach.add_argument("--min-similarity", type=float, default=0.0, dest="min_similarity")
    teach.add_argument("--apply", action="store_true", help="label every suggestion at once (few-shot source)")
    teach.add_argument("--json", action="store_true", dest="json_output")
    teach.set_defaults(handler=run_teach)

    apply = sub.add_parser("apply", help="give snapshots a taught class's label (source few_shot)")
    apply.add_argument("name", metavar="LABEL")
    apply.add_argument("ids", nargs="+", metavar="ID")
    apply.add_argument("--json", action="store_true", dest="json_output")
    apply.set_defaults(handler=run_apply)


def _add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--query", metavar="TEXT", help='filter text as in the app, e.g. "format:stl label:chair"')
    add_filter_arguments(parser, ("--format", "--source-format"))


def selection_filter(args: argparse.Namespace) -> Any:
    """The SnapshotFilter of ``--query`` text and the filter flags together (None: neither given)."""
    from ..engine.store.filters import SnapshotFilter

    flags = {name: getattr(args, name, None) for name in FILTER_DESTS}
    flt = SnapshotFilter.parse(args.query) if getattr(args, "query", None) else SnapshotFilter()
    given = {k: v for k, v in flags.items() if v not in (None, [], "")}
    if given:
        flt = flt.merged(**given)
    return flt if (flt or getattr(args, "query", None)) else None


def run_decision(args: argparse.Namespace, ctx: CommandContext) -> int:
    review = ctx.engine().review
    flt = selection_filter(args)
    if not args.ids and flt is None:
        ctx.err.print(f"snapshot {args.decision}: give snapshot ids, --query or filter flags", markup=False)
        return 2
    ids = review.resolve(args.ids) if args.ids else []
    if flt is not None:
        ids += [i for i in review.ids(flt) if i not in set(ids)]
    if not ids:
        _report(ctx, args.decision, None, 0, [], flt)
        return 0
    action = {
        "accept": lambda: review.accept(ids),
        "reject": lambda: review.reject(ids, args.reason),
        "unreview": lambda: review.unreview(ids),
        "label": lambda: review.set_label(ids, args.new_label),
        "unlabel": lambda: review.set_label(ids, None),
        "tag": lambda: review.tag(ids, args.tag_names.split(",")),
        "untag": lambda: review.untag(ids, args.tag_names.split(",")),
    }[args.decision]
    result = action()
    _report(ctx, args.decision, result.action_id, len(result.changed), result.changed, flt, result.unchanged)
    return 0


def _report(ctx: CommandContext, kind: str, action_id: int | None, changed: int, ids: list[str], flt: Any,
            unchanged: int = 0) -> None:  # fmt: skip
    if ctx.json_output:
        ctx.emit_json({"action": kind, "action_id": action_id, "changed": changed, "unchanged": unchanged,
                       "filter": flt.to_dict() if flt is not None else None, "snapshot_ids": ids})  # fmt: skip
        return
    where = f" ({flt.describe()})" if flt is not None else ""
    tail = f", {unchanged} already so" if unchanged else ""
    number = f" as action {action_id}" if action_id is not None else ""
    ctx.out.print(f"{kind}: {changed} snapshot(s) changed{tail}{where}{number}", markup=False, highlight=False)


def run_undo(args: argparse.Namespace, ctx: CommandContext) -> int:
    result = ctx.engine().review.undo(args.action_id, any_user=args.any_user)
    if ctx.json_output:
        ctx.emit_json(result.to_dict())
    else:
        ctx.out.print(f"undid action {result.undo_of}: {len(result.changed)} snapshot(s) restored "
                      f"(recorded as action {result.action_id})", markup=False, highlight=False)  # fmt: skip
    return 0


def run_history(args: argparse.Namespace, ctx: CommandContext) -> int:
    entries = ctx.engine().review.history(args.snapshot_id, args.limit)
    if ctx.json_output:
        for entry in entries:
            ctx.emit_json(entry.to_dict())
        return 0
    from rich.table import Table
    from rich.text import Text

    from ..engine.text import display

    table = Table()
    for column in ("action", "kind", "snapshot", "field", "before", "after", "who", "when"):
        table.add_column(column, overflow="fold")
    for e in entries:
        when = e.at.isoformat(" ", "seconds") if e.at else ""
        cells = (str(e.action_id), e.kind, e.snapshot_id[:8], e.field, _value(e.old), _value(e.new), e.actor, when)
        table.add_row(*(Text(display(c)) for c in cells))
    ctx.out.print(table)
    return 0


def _value(value: Any) -> str:
    """A history value as people read it: ``rejected (off-topic)``, ``chair [human]``, ``a, b``."""
    if isinstance(value, list):
        return ", ".join(value) or "-"
    if isinstance(value, dict) and "decision" in value:
        return (value["decision"] or "unreviewed") + (f" ({value['reason']})" if value.get("reason") else "")
    if isinstance(value, dict) and "label" in value:
        return f"{value['label']} [{value['source']}]" if value.get("label") else "-"
    return str(value)


def run_order(args: argparse.Namespace, ctx: CommandContext) -> int:
    items = ctx.engine().review.order(selection_filter(args), args.limit, duplicates=not args.no_duplicates)
    if ctx.json_output:
        for item in items:
            ctx.emit_json(item.to_dict())
        return 0
    from rich.table import Table
    from rich.text import Text

    from ..engine.text import display

    table = Table()
    for column in ("id", "why", "label", "conf", "cluster"):
        table.add_column(column)
    for i in items:
        conf = "" if i.confidence is None else f"{i.confidence:.2f}"
        cluster = "" if i.cluster is None else str(i.cluster)
        table.add_row(*(Text(display(c)) for c in (i.snapshot_id[:8], i.why, i.label or "", conf, cluster)))
    ctx.out.print(table)
    return 0


def run_teach(args: argparse.Namespace, ctx: CommandContext) -> int:
    review = ctx.engine().review
    taught = review.teach(args.name, args.ids or None, k=args.k, min_similarity=args.min_similarity)
    suggested = [s for s, _ in taught.suggestions]
    applied = review.apply(taught.name, suggested) if args.apply and suggested else None
    if ctx.json_output:
        out = taught.to_dict()
        out["applied"] = None if applied is None else applied.to_dict()
        ctx.emit_json(out)
        return 0
    known = " (the classifier has this class too)" if taught.known_class else ""
    ctx.out.print(f"taught {taught.name!r} from {len(taught.examples)} example(s) in {taught.model_id}{known}; "
                  f"nearest unlabelled:", markup=False, highlight=False)  # fmt: skip
    for sid, score in taught.suggestions:
        ctx.out.print(f"  {sid}  {score:.3f}", markup=False, highlight=False)
    if applied is not None:
        ctx.out.print(f"labelled {len(applied.changed)} as {taught.name!r} (action {applied.action_id})",
                      markup=False, highlight=False)  # fmt: skip
    return 0


def run_apply(args: argparse.Namespace, ctx: CommandContext) -> int:
    result = ctx.engine().review.apply(args.name, args.ids)
    _report(ctx, "apply", result.action_id, len(result.changed), result.changed, None, result.unchanged)
    return 0
