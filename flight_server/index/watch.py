"""The live indexer: watch the served directory and index what changes, within a second.

Two threads. One collects change events from ``watchfiles`` (inotify on Linux; polling where
notifications do not reach — network file systems, detected from ``/proc/mounts``, or when
asked). The other decides, for each changed path, *when* to index it, and hands batches to
:meth:`Indexer.refresh`:

* deleted files and directories leave the catalog at once (their datasets go with them);
* a directory that appears (created, or moved in with files) is listed, and each of its files
  follows the rules below on its own;
* a file whose header says it is whole (``sources/writing.py``: a closed HDF5 file with
  consistency flags, a ROOT file whose ``fEND`` is its size) is indexed at once; a file written in
  HDF5 SWMR mode is indexed at every flush (rate-limited to one scan per ``live_interval``);
* a file still open for writing is left alone until its header says otherwise, or until it has
  not changed for ``grace`` seconds (a writer killed mid-file: the scan then decides);
* any other file waits until its size and mtime have not moved for ``settle`` seconds.

The indexer's own checks finish the job: a file that changes while it is scanned, or fails to
scan while it is still young, is tried again later rather than served torn or recorded as broken.
A storm of new files is indexed in batches (one transaction and one derivation of the multi-file
datasets each: at least ``batch`` files, at most ~8 batches for what is due at once), the thread at a
lower CPU priority, so reads go on meanwhile. Events can be lost (an
inotify queue overflow, a watch limit): a full incremental rescan every ``rescan`` seconds catches
anything missed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from arrowroot.flight_server.index.indexer import Indexer
from arrowroot.flight_server.sources import writing

log = logging.getLogger("arrowroot.watch")
logging.getLogger("watchfiles.main").setLevel(logging.WARNING)  # not a line per change batch

#: file systems whose changes made on other hosts send no inotify events: poll them
NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "fuse.sshfs", "fuse.cephfs", "lustre",
              "gpfs", "beegfs", "fuse.glusterfs", "glusterfs", "afs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone",
              "fuse.juicefs", "cvmfs", "fuse.cvmfs", "fuse.eos", "fuse.xrootdfs", "panfs", "fuse.dcache"}


def network_fs(path: Path) -> str | None:
    """The file-system type of ``path`` when it is a network one (Linux ``/proc/mounts``), else None."""
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    real, best, kind = os.path.realpath(path), "", ""
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1].replace("\\040", " ")
        if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
            best, kind = mount, fields[2]
    return kind if kind in NETWORK_FS else None


@dataclass
class _Pending:
    last_event: float            # monotonic time of the latest event for the path
    ident: tuple | None = None   # (size, mtime_ns) at the last look
    since: float = 0.0           # when ident last changed
    not_before: float = 0.0      # retry back-off after a held scan
    tries: int = 0


class Watcher:
    """Keeps ``indexer``'s catalog in step with its directory as files come, grow and go."""

    def __init__(self, indexer: Indexer, *, poll: bool | None = None, poll_interval: float = 0.3,
                 settle: float = 0.3, grace: float = 10.0, live_interval: float = 0.1, batch: int = 256,
                 rescan: float = 300.0, ignore: tuple[Path, ...] = ()):
        self.indexer = indexer
        self.root = Path(os.path.realpath(indexer.root))
        fs = network_fs(self.root)
        #: poll instead of inotify: asked for, or the directory is on a network file system
        self.poll = bool(fs) if poll is None else poll
        self.reason = (f"{fs} file system" if fs and poll is None else "asked" if poll else "")
        self.poll_interval, self.settle, self.grace = poll_interval, settle, grace
        self.live_interval, self.batch, self.rescan = live_interval, max(1, batch), rescan
        self._ignore = tuple(os.path.realpath(p) for p in ignore)
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_scan: dict[str, float] = {}
        # counters (tests, metrics)
        self.events = 0
        self.indexed = 0
        self.batches = 0
        self.ready = threading.Event()   # set once the watch is in place

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Watcher:
        for name, target in (("watch-events", self._events), ("watch-index", self._work)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def note(self, paths: list[str]) -> None:
        """Paths (relative) that changed: index them as the rules say (events call this)."""
        now = time.monotonic()
        with self._lock:
            for rel in paths:
                entry = self._pending.get(rel)
                if entry is None:
                    self._pending[rel] = _Pending(now, since=now)
                else:
                    entry.last_event = now
            self.events += len(paths)
        self._wake.set()

    # ------------------------------------------------------------ events

    def _wanted(self, change: object, path: str) -> bool:
        real = path
        rel = os.path.relpath(real, self.root)
        if rel == "." or rel.startswith(".."):
            return False
        if any(part.startswith(".") or part == "__pycache__" for part in rel.split(os.sep)):
            return False
        return not any(real == p or real.startswith(p + os.sep) or real.startswith(p + ".") for p in self._ignore)

    def _events(self) -> None:
        import watchfiles

        poll = self.poll
        while not self._stop.is_set():
            try:
                for changes in watchfiles.watch(
                        self.root, watch_filter=self._wanted, debounce=300, step=30, stop_event=self._stop,
                        rust_timeout=500, yield_on_timeout=True, force_polling=poll,
                        poll_delay_ms=int(self.poll_interval * 1000), ignore_permission_denied=True,
                        raise_interrupt=False):
                    self.ready.set()
                    if changes:
                        self.note(sorted({Path(os.path.relpath(p, self.root)).as_posix() for _, p in changes}))
                return
            except Exception as exc:  # inotify limits, a directory gone: fall back to polling
                if poll:
                    log.error("watching %s failed (%s); retrying in 5 s", self.root, exc)
                    if self._stop.wait(5.0):
                        return
                else:
                    log.warning("cannot watch %s with inotify (%s); polling every %.1f s instead",
                                self.root, exc, self.poll_interval)
                    poll, self.poll, self.reason = True, True, f"inotify failed: {exc}"

    # ------------------------------------------------------------ indexing

    def _hold(self, rel: str, st: os.stat_result) -> bool:
        """A file that failed to scan is tried again while it is younger than ``grace``."""
        entry = self._pending.get(rel)
        changed = entry.since if entry is not None else time.monotonic()
        return time.monotonic() - changed < self.grace or st.st_mtime > time.time() - self.grace

    def _expand(self, rel: str, now: float) -> bool:
        """A directory moved or created with files in it: each file goes through the rules on its own
        (so a storm of files is indexed in batches, and a half-written one waits)."""
        try:
            inside = self.indexer.walk(rel)
        except Exception:  # gone meanwhile, or a link leading out: the indexer's refresh decides
            return False
        with self._lock:
            self._pending.pop(rel, None)
            for path in inside:
                if path not in self._pending and not any(p.startswith(".") for p in path.split("/")):
                    self._pending[path] = _Pending(now, since=now)
        return True

    def _due(self, now: float) -> tuple[list[str], float]:
        """Paths to index now, and how long to sleep before looking again."""
        due: list[str] = []
        wait = 1.0
        with self._lock:
            items = list(self._pending.items())
        for rel, entry in items:
            if entry.not_before > now:
                wait = min(wait, entry.not_before - now)
                continue
            full = os.path.join(self.root, rel)
            try:
                st = os.stat(full)
            except OSError:
                due.append(rel)  # deleted
                continue
            if not os.path.isfile(full):
                if not self._expand(rel, now):
                    due.append(rel)  # not a directory we could list: the indexer decides
                wait = min(wait, 0.01)
                continue
            ident = (st.st_size, st.st_mtime_ns)
            if ident != entry.ident:
                entry.ident, entry.since = ident, now
            quiet = now - entry.since
            state = writing.state(full, st.st_size)
            if state == writing.LIVE:
                last = self._last_scan.get(rel, 0.0)
                if now - last >= self.live_interval:
                    due.append(rel)
                else:
                    wait = min(wait, self.live_interval - (now - last))
            elif state == writing.CONSISTENT:
                due.append(rel)
            elif state == writing.WRITING:
                if quiet >= self.grace:
                    due.append(rel)  # the writer is gone: the scan decides
                else:
                    wait = min(wait, 0.1)
            elif quiet >= self.settle:
                due.append(rel)
            else:
                wait = min(wait, self.settle - quiet)
        return due, max(0.01, wait)

    def _work(self) -> None:
        try:  # index behind the readers: a lower CPU priority for this thread only (Linux)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        next_rescan = time.monotonic() + self.rescan
        while not self._stop.is_set():
            now = time.monotonic()
            due, wait = self._due(now)
            if not due:
                if self.rescan > 0 and now >= next_rescan and not self.pending():
                    next_rescan = now + self.rescan
                    try:
                        self.indexer.run()
                    except Exception:
                        log.exception("periodic rescan failed")
                    continue
                self._wake.wait(min(wait, max(0.01, next_rescan - now)) if self.rescan > 0 else wait)
                self._wake.clear()
                continue
            # each batch ends with a derivation of the multi-file datasets over the whole catalog: a
            # storm goes in at most ~8 batches of at least ``batch`` files, not thousands of small ones
            size = max(self.batch, -(-len(due) // 8))
            for i in range(0, len(due), size):
                if self._stop.is_set():
                    return
                self._index(due[i:i + size])

    def _index(self, paths: list[str]) -> None:
        started = time.monotonic()
        try:
            report = self.indexer.refresh(paths, hold=self._hold)
        except Exception:
            log.exception("live indexing of %d paths failed", len(paths))
            report = None
        now = time.monotonic()
        held = set(report.held) if report is not None else set(paths)
        with self._lock:
            for rel in paths:
                self._last_scan[rel] = started
                entry = self._pending.get(rel)
                if entry is None:
                    continue
                if rel in held:
                    entry.tries += 1
                    entry.not_before = now + min(self.grace / 4, 0.1 * 2 ** min(entry.tries, 6))
                elif entry.last_event < started:  # no newer event meanwhile
                    del self._pending[rel]
            if len(self._last_scan) > 100_000:
                self._last_scan.clear()
        self.batches += 1
        self.indexed += len(paths) - len(held)
        time.sleep(0)  # let readers have the interpreter between batches


__all__ = ["Watcher", "network_fs", "NETWORK_FS"]
