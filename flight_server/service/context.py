"""The context every door shares: built once per process, in the composition root.

A coordinator's context holds the catalog and everything that answers from it (access rules,
the indexer, the workspace, the data-node membership); a data node's holds only what running a
signed task needs (the ticket key, the readers, the stream limits). Doors (``server/`` for
Flight, Flight SQL, the workspace API and data nodes; ``web/`` for HTTP) take a context and the
:class:`~.service.Service` over it; none reaches into another.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from arrowroot.catalog.store import Catalog
from arrowroot.flight_server import __version__
from arrowroot.flight_server.core import readpool
from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.execute.cache import chunk_cache
from arrowroot.flight_server.execute.readers import ReaderCache
from arrowroot.flight_server.index.indexer import Indexer
from arrowroot.flight_server.index.watch import Watcher
from arrowroot.flight_server.plan.planner import Limits
from arrowroot.flight_server.service import sso
from arrowroot.flight_server.service.access import Access, AuthConfigError
from arrowroot.flight_server.service.allocator import use_returning_pool
from arrowroot.flight_server.service.counters import Counters
from arrowroot.flight_server.service.identity import Authenticator
from arrowroot.flight_server.service.membership import Membership, Probe
from arrowroot.flight_server.service.metrics import Metrics
from arrowroot.flight_server.service.streams import StreamSlots
from arrowroot.flight_server.service.tickets import Keys, TicketSigner
from arrowroot.flight_server.workspace import store as workspace_store

log = logging.getLogger("arrowroot")


@dataclass
class ServerContext:
    """Settings and the shared resources of one server process (see the module docstring)."""

    settings: Settings
    role: str                         # "coordinator" or "node"
    keys: Keys
    tickets: TicketSigner
    readers: ReaderCache
    streams: StreamSlots
    served: Counters                  # per dataset: requests, rows, bytes, cut scans (the stats action)
    limits: Limits
    catalog: Catalog | None = None
    access: Access | None = None
    auth: Authenticator | None = None
    indexer: Indexer | None = None
    workspace: workspace_store.Workspace | None = None
    membership: Membership | None = None
    metrics: Metrics | None = None    # Prometheus metrics of this server (service/metrics.py)
    watcher: Watcher | None = None    # the live indexer (index/watch.py); started by whoever serves

    @classmethod
    def coordinator(cls, settings: Settings, catalog: Catalog | None = None,
                    probe: Probe | None = None) -> ServerContext:
        """Everything a serving coordinator needs; ``probe`` asks static data nodes for their health."""
        keys = Keys(settings.ticket_key())
        catalog = catalog or Catalog(settings.catalog_path)
        ctx = cls._common(settings, "coordinator", keys)
        ctx.catalog = catalog
        try:  # outside issuers: [auth] in arrowroot.toml or ARROWROOT_AUTH_CONFIG (sso.py)
            external = sso.load(settings.root, settings.auth_config)
        except ValueError as exc:
            raise AuthConfigError(str(exc)) from None
        ctx.access = Access(catalog, settings, outside_issuers=external is not None)
        ctx.auth = Authenticator(ctx.access, settings.token_ttl, external)
        ctx.indexer = Indexer(settings.root, catalog, show_internal=settings.show_internal,
                              links_outside_root=settings.links_outside_root,
                              zone_index_bytes=int(settings.zone_index_mb * (1 << 20)))
        catalog.zones.enabled = settings.zone_maps   # zone maps (plan/zones.py): --no-zone-maps turns them off
        if keys.shared:
            ctx.membership = Membership(keys.key("membership"), ttl=settings.node_ttl,
                                        interval=max(0.2, settings.node_ttl / 3), probe=probe)
            ctx.membership.add_static(settings.node_list)
            if settings.node_list:
                ctx.membership.start_polling()
        elif settings.node_list:
            raise InvalidRequest("nodes: data nodes need the coordinator's ticket key; give both --key-file PATH "
                                 "(or ARROWROOT_TICKET_KEY)")
        limits = workspace_store.Limits(max_upload_bytes=settings.max_upload_bytes, quota_bytes=settings.quota_bytes)
        # default: next to the catalog (<root>/.arrowroot/workspace unless --catalog moves it), so a
        # read-only data mount (Docker) still gets a writable workspace on the catalog volume
        directory = settings.workspace or settings.catalog_path.parent / "workspace"
        ctx.workspace = workspace_store.Workspace(settings.root, directory, catalog, limits, __version__)
        ctx.workspace.recover()
        if settings.watch:  # built here, started by `arrowroot serve` (Watcher.start)
            ctx.watcher = Watcher(ctx.indexer, poll=settings.watch_poll, settle=settings.watch_settle,
                                  grace=settings.watch_grace, ignore=(settings.catalog_path, directory))
        ctx.readers.mount(workspace_store.MOUNT, ctx.workspace.dir)
        m = ctx.metrics
        m.watch_indexer(ctx.indexer, catalog)
        if ctx.membership is not None:
            m.watch_membership(ctx.membership)
        m.watch_logins(ctx.auth.logins)
        m.watch_workspace(ctx.workspace)
        return ctx

    @classmethod
    def node(cls, settings: Settings) -> ServerContext:
        """A data node's: the shared key, the files, no catalog."""
        master = settings.ticket_key()
        if master is None:
            raise InvalidRequest("a data node needs its coordinator's ticket key: --key-file PATH "
                                 "(or ARROWROOT_TICKET_KEY), the same as the coordinator's")
        ctx = cls._common(settings, "node", Keys(master))
        if settings.workspace is not None:  # workspace files outside the root (flight_server/workspace)
            ctx.readers.mount(workspace_store.MOUNT, settings.workspace)
        return ctx

    @classmethod
    def _common(cls, settings: Settings, role: str, keys: Keys) -> ServerContext:
        use_returning_pool()  # freed memory goes back to the OS (see allocator.py)
        readpool.configure(settings.read_threads)   # the sources' shared decompression pools
        metrics = Metrics(role, enabled=settings.metrics)
        ctx = cls(settings=settings, role=role, keys=keys, metrics=metrics,
                  tickets=TicketSigner(keys.key("tickets"), settings.ticket_ttl),
                  readers=ReaderCache(settings.root, chunks=chunk_cache(settings)),
                  streams=StreamSlots(settings.max_streams, settings.max_streams_per_principal,
                                      settings.stream_idle_timeout),
                  served=Counters(),
                  limits=Limits(settings.endpoint_bytes, settings.chunk_bytes, settings.batch_bytes,
                                settings.batch_rows))
        metrics.watch_streams(ctx.streams)
        metrics.watch_cache(ctx.readers.chunks)
        return ctx

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.membership is not None:
            self.membership.stop()
        self.readers.close()


__all__ = ["ServerContext"]
