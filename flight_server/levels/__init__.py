"""Reading levels (pygama's DataLoader levels; declared in arrowroot.toml, derived in
``datasets/levels.py``, planned in ``plan/levels.py``).

* ``aligned.AlignedReader``: a hit level's part, the tiers' tables of one (file key, channel) read
  side by side, entry by entry, without copying any tier.
* ``events.EventReader``: an event level's part, one file key's TCM, event tiers and hit tables:
  one row per event, the event tiers' columns flat and the hit columns as lists of the event's hits
  selected by channel, hit cut and mode.

Both are ``Reader``s: the executor runs them (two-phase cuts, batching, read-ahead), and workspace
skims of a level read through them too. They open tier tables through a callback, so the executor
can go through its reader and column-chunk caches and check each file's identity, while a skim
opens the files itself. Neither needs the catalog: a read task carries every file it touches.
"""

from arrowroot.flight_server.levels.aligned import AlignedReader, OpenTier
from arrowroot.flight_server.levels.events import EventReader

__all__ = ["AlignedReader", "EventReader", "OpenTier"]
