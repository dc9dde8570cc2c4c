"""One module per screen; modals live next to the screen that opens them.

Screens never open files, sockets or the database: they ask the engine through the app's
:class:`~destill3d_tui.app.EngineBridge` and render its replies and events.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.screen import Screen

from .database import DatabaseScreen
from .queue import QueueScreen
from .search import SearchScreen
from .snapshots import SnapshotsScreen

MODE_SCREENS: dict[str, type[Screen]] = {
    "search": SearchScreen,
    "queue": QueueScreen,
    "snapshots": SnapshotsScreen,
    "database": DatabaseScreen,
}


def binding_sections() -> list[tuple[str, list[Binding]]]:
    """Every screen's and keyed widget's bindings, for the help screen."""
    from ..widgets.pointcloud import PointCloudView

    sections = [(cls.TITLE or name, [b for b in cls.BINDINGS if isinstance(b, Binding)])
                for name, cls in MODE_SCREENS.items()]
    sections.append(("Point cloud (Snapshots)", list(PointCloudView.BINDINGS)))
    return sections
