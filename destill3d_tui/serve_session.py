"""One browser session of `destill3d-tui serve`: the app, without a pipeline of its own.

textual-serve starts ``python -m destill3d_tui.serve_session --db URL ...`` per browser session.
Such a session browses, searches, queues and exports like the terminal app, but does not
process the queue itself, for three reasons:

- on SQLite one process owns the queue (ARCHITECTURE.md); with N sessions there would be N
  pipelines, and a headless run beside them;
- the app's stdout is textual-serve's protocol pipe, not a terminal: extraction children
  inheriting it would write into that stream;
- each pipeline would start its own extraction workers on the server's cores per visitor.

Processing is a ``destill3d-tui --headless --watch`` run beside the server (README).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from .cli import build_parser, settings_overrides
    from .engine.config import load_settings
    from .engine.errors import Destill3DError

    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config, settings_overrides(args))
        from .engine.api import Destill3D

        engine = Destill3D(settings=settings)
    except Destill3DError as exc:  # configuration errors included
        print(f"destill3d-tui: {exc.reason}: {exc}", file=sys.stderr)
        return 2
    from .app import Destill3DApp

    try:
        result = Destill3DApp(engine, start_pipeline=False).run()
    finally:
        engine.close()
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
