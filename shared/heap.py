"""Keeping the garbage collector's full collections short in the serving processes.

A full (generation 2) collection walks every object the collector tracks, holding the GIL:
with the ~140,000 objects of a started web process (modules, the app, templates, compiled
patterns, SQLAlchemy's metadata) that took 70-100 ms on the 2-core bench machine, once every
15 s or so under load, and every request in flight waited for it (open-loop POSTs at 40/s:
max latency 72-96 ms; with the start-up objects frozen, 19-22 ms). Those objects live as long
as the process, so the collector need never look at them again.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Collect what start-up left behind, then move every object still tracked to the
    permanent generation, which collections skip (call once, when ready to serve). Returns
    how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
