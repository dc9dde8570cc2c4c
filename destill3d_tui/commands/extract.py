"""`destill3d-tui extract file|dir`: snapshots from local files, each parsed in a supervised child.

``--json`` prints one object per input on stdout:
``{"path", "status": "ok"|"failed", "reason", "message", "output", "points", "ms"}``;
human progress goes to stderr. Exit code 0 when every file worked, 1 when some failed.

Relative paths mean the caller's working folder (workers run in their own temp dirs, so paths
are made absolute before any worker starts). Names and messages in both outputs are the
escaped display form of :func:`engine.text.display`: a name holding terminal escapes or bytes
that are not UTF-8 prints as ``\x1b[2J`` / ``\xff``, never raw (JSON included, so every
record is valid, printable ASCII JSON).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import Future, as_completed
from pathlib import Path
from typing import Any

from .context import CommandContext
from .extract_archives import submit_jobs

STRATEGIES = ("uniform", "fps", "poisson", "voxel", "hybrid")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("extract", help="extract snapshots from local 3D files")
    sub = parser.add_subparsers(dest="extract_command", metavar="COMMAND")
    parser.set_defaults(handler=None, group_parser=parser)

    one = sub.add_parser("file", help="extract one file (in a supervised child process)")
    one.add_argument("path", type=Path)
    one.add_argument("--output", "-o", type=Path, help="write the snapshot here (.d3d)")
    _extraction_flags(one)
    one.set_defaults(handler=extract_file_command)

    many = sub.add_parser("dir", help="extract every model file in a folder")
    many.add_argument("directory", type=Path)
    many.add_argument("--recursive", "-r", action="store_true", help="descend into sub-folders")
    many.add_argument("--pattern", help="glob for file names (default: every supported 3D extension)")
    many.add_argument("--output-dir", type=Path, help="write one .d3d per input here (default: into the database)")
    many.add_argument("--workers", type=int, dest="dir_workers", metavar="N", help="child processes in parallel")
    _extraction_flags(many)
    many.set_defaults(handler=extract_dir_command)


def _extraction_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--points", type=_points, help="points per snapshot, 256-16384 (default: target_points)")
    parser.add_argument("--strategy", choices=STRATEGIES, help="sampling strategy")
    parser.add_argument("--views", action="store_true", default=None, help="also render 12 depth views")
    parser.add_argument("--seed", type=int, help="sampling seed")
    parser.add_argument("--precision", choices=("compact", "exact"), help="array precision in the .d3d")
    parser.add_argument("--json", action="store_true", dest="json_output", default=argparse.SUPPRESS,
                        help="one JSON object per input on stdout")  # fmt: skip


def _points(text: str) -> int:
    """``--points`` within the range ``extraction.target_points`` allows (config.LIMITS)."""
    from ..engine.config import range_message

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    message = range_message("extraction.target_points", value)
    if message is not None:
        raise argparse.ArgumentTypeError(message.replace("extraction.target_points", "--points", 1))
    return value


def _options(args: argparse.Namespace, ctx: CommandContext) -> Any:
    from ..engine.extract.types import ExtractOptions

    return ExtractOptions.from_settings(
        ctx.settings.extraction, points=args.points, strategy=args.strategy, views=args.views, seed=args.seed,
        precision=args.precision,
    )  # fmt: skip


def _supervisor(ctx: CommandContext, workers: int) -> Any:
    from ..engine.extract.isolate import ExtractionSupervisor

    ex = ctx.settings.extraction
    return ExtractionSupervisor(workers, timeout_s=ex.timeout_s, memory_limit_mb=ex.memory_limit_mb,
                                nice=ex.worker_nice)


# ---------------------------------------------------------------- extract file


def extract_file_command(args: argparse.Namespace, ctx: CommandContext) -> int:
    path: Path = args.path
    if not path.is_file():
        ctx.err.print(f"destill3d-tui: no such file: {_shown(path)}", markup=False)
        return 2
    options = _options(args, ctx)
    with _supervisor(ctx, 1) as supervisor:  # --output is written here, in the caller's folder
        future = supervisor.submit(str(path), path.absolute(), options, None)
        record = _finish(future, path, args.output, options.precision)
    _report(ctx, record, verbose=True)
    return 0 if record["status"] == "ok" else 1


# ---------------------------------------------------------------- extract dir


def extract_dir_command(args: argparse.Namespace, ctx: CommandContext) -> int:
    directory: Path = args.directory
    if not directory.is_dir():
        ctx.err.print(f"destill3d-tui: no such folder: {_shown(directory)}", markup=False)
        return 2
    if args.output_dir is None:
        return _into_database(args, ctx)
    out_dir: Path = args.output_dir
    files = [
        f for f in find_inputs(directory, recursive=args.recursive, pattern=args.pattern) if not _inside(f, out_dir)
    ]
    if not files:
        ctx.err.print(f"no model files in {_shown(directory)}", markup=False)
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    options = _options(args, ctx)
    workers = args.dir_workers or ctx.settings.pipeline.workers
    failed = 0
    with _supervisor(ctx, workers) as supervisor:
        jobs = submit_jobs(supervisor, files, options)  # an archive: one job per model file inside
        targets = output_names([job.label for job in jobs.values()], out_dir)
        for done, future in enumerate(as_completed(jobs), start=1):
            job = jobs[future]
            record = _finish(future, job.path, targets[job.label], options.precision)
            if job.member is not None:
                record["member"] = _shown(job.member)
            failed += record["status"] != "ok"
            _report(ctx, record, progress=f"[{done}/{len(jobs)}]")
    ctx.err.print(f"{len(jobs) - failed} of {len(jobs)} files extracted into {_shown(out_dir)}", markup=False)
    return 1 if failed else 0


def _into_database(args: argparse.Namespace, ctx: CommandContext) -> int:
    try:
        engine = ctx.engine()
        summary = engine.extract.from_directory(args.directory, recursive=args.recursive, pattern=args.pattern)
    except (ImportError, AttributeError, NotImplementedError) as exc:
        ctx.err.print(
            f"destill3d-tui: extracting into the database is not available in this build ({exc}); "
            "use --output-dir DIR to write .d3d files instead",
            markup=False,
        )
        return 2
    fields = {k: getattr(summary, k, None) for k in ("stored", "failed", "duplicates", "interrupted")}
    if ctx.json_output:
        ctx.emit_json({"directory": _shown(args.directory), **fields})
    else:
        ctx.err.print(", ".join(f"{k}: {v}" for k, v in fields.items()), markup=False)
    return 1 if fields.get("failed") else 0


def _inside(path: Path, folder: Path) -> bool:
    """Snapshots written on an earlier run into an output dir under the input dir are not inputs."""
    return path.resolve().is_relative_to(folder.resolve())


def find_inputs(directory: Path, *, recursive: bool, pattern: str | None) -> list[Path]:
    """Regular files under ``directory`` (symlinks are not followed), sorted for a stable order."""
    from ..engine.archive import is_archive_name
    from ..engine.formats import EXTENSIONS

    glob = pattern or "*"
    candidates = directory.rglob(glob) if recursive else directory.glob(glob)
    files = [p for p in candidates if p.is_file() and not p.is_symlink()]
    if pattern is None:
        files = [p for p in files if p.suffix.lower() in EXTENSIONS or is_archive_name(p.name)]
    return sorted(files)


def output_names(files: list[Path], out_dir: Path) -> dict[Path, Path]:
    """``name.ext.d3d`` per input (``fuze.obj`` and ``fuze.ply`` differ); ``name.ext.2.d3d`` ... on repeats.

    Names are compared case-insensitively so they never collide on any file system either.
    Long, undecodable or control-character names are shortened with a hash
    (:func:`~destill3d_tui.engine.store.snapshot.snapshot_file_name`).
    """
    from ..engine.store.snapshot import snapshot_file_name

    taken: set[str] = set()
    names: dict[Path, Path] = {}
    for path in files:
        stem = snapshot_file_name(path.name, "")
        candidate, n = f"{stem}.d3d", 1
        while candidate.lower() in taken:
            n += 1
            candidate = f"{stem}.{n}.d3d"
        taken.add(candidate.lower())
        names[path] = out_dir / candidate
    return names


# ---------------------------------------------------------------- results


def _finish(future: Future, path: Path, output: Path | None, precision: str) -> dict[str, Any]:
    """Wait for one file and turn its outcome into the ``--json`` record (writing the .d3d)."""
    from ..engine.errors import describe

    record: dict[str, Any] = {"path": _shown(path), "status": "ok", "reason": None, "message": None,
                              "output": None, "points": None, "ms": None}  # fmt: skip
    try:
        snapshot = future.result()
        record["points"] = snapshot.geometry.point_count
        if output is not None:
            snapshot.save(output, precision)
            record["output"] = _shown(output)
        record["message"] = _shown(_summary(snapshot))
    except Exception as exc:  # every failure is reported with its reason; the run goes on
        info = describe(exc)
        record.update(status="failed", reason=info["reason"], message=_shown(info["message"]))
    started = getattr(future, "started_at", None)
    record["ms"] = round((time.monotonic() - started) * 1000, 1) if started else None
    return record


def _shown(value: object) -> str:
    """A path, name or message as it may be printed (escaped control characters and bytes)."""
    from ..engine.text import display

    return display(value)


def _summary(snapshot: Any) -> str:
    f = snapshot.features
    return f"{snapshot.provenance.original_format}: {f.vertex_count} vertices, {f.face_count} faces"


def _report(ctx: CommandContext, record: dict[str, Any], *, progress: str = "", verbose: bool = False) -> None:
    if ctx.json_output:
        ctx.emit_json(record)
    name = f"{record['path']} [{record['member']}]" if record.get("member") else record["path"]  # in an archive
    if record["status"] == "ok":
        where = f" -> {record['output']}" if record["output"] else ""
        line = f"{progress} ok {name}{where} ({record['points']} points, {record['ms']} ms)"
    else:
        line = f"{progress} FAILED {name}: {record['reason']}: {record['message']}"
    ctx.err.print(line.strip(), markup=False, soft_wrap=True)
    if verbose and not ctx.json_output and record["status"] == "ok":
        ctx.err.print(record["message"], markup=False)
