"""Who may read what: the one place the rule "what you cannot read does not exist" lives.

Every door asks :class:`Access` about a :class:`~.caller.Caller` — Flight, Flight SQL, HTTP and the
workspace API alike — so a dataset hidden from one door is hidden from all, and the NOT_FOUND
message for it is the one a truly missing dataset gets (its closest-name hints are computed over
the caller's visible datasets only). Authentication (credentials → a user) is ``identity.py``'s job.
"""

from __future__ import annotations

import logging
import threading

from arrowroot.catalog import identities
from arrowroot.catalog.errors import NotFound, not_found
from arrowroot.catalog.models import DatasetRecord
from arrowroot.catalog.store import Catalog
from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.core.request import dataset_name
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.lang import glob
from arrowroot.flight_server.service.caller import Caller
from arrowroot.flight_server.service.claims import may_read
from arrowroot.flight_server.workspace.names import HOME

log = logging.getLogger("arrowroot.auth")
MAX_VISIBLE_KEYS = 100_000   # cached visibility sets (per user, token groups, token scopes)


class AuthConfigError(InvalidRequest):
    """The server cannot start with this authentication setup; the message says what to do."""


def is_loopback(host: str) -> bool:
    import ipaddress

    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Access:
    """Grants → the datasets a caller may read, for one catalog."""

    def __init__(self, catalog: Catalog, settings: Settings, outside_issuers: bool = False):
        """``outside_issuers``: the server trusts OIDC issuers or a JupyterHub (``sso.py``), so it
        authenticates even before the catalog has users or grants."""
        self.catalog = catalog
        self._lock = threading.Lock()
        self._ident = identities.snapshot(catalog)
        self._visible: dict[tuple, frozenset[str]] = {}
        self._visible_generation = -1
        mode = settings.auth
        configured = self._ident.configured or outside_issuers
        if mode is True and not configured:
            raise AuthConfigError(
                f"--auth: the catalog {catalog.path} has no users and no public grant, so nobody could "
                "read anything. Add a user (`arrowroot users add DIR NAME`) and a grant "
                "(`arrowroot grant DIR 'PATTERN' --to user:NAME`), or publish data "
                "(`arrowroot grant DIR 'PATTERN' --to public`).")
        self.enabled = configured if mode is None else bool(mode)
        if mode is False and configured:
            log.warning("authentication is off (--no-auth) although %s has users or grants: "
                        "every dataset is readable by everyone", catalog.path)
        if self.enabled:
            if not self._ident.grants:
                log.warning("authentication is on but there are no grants: users can log in and see no dataset")
            if not settings.tls_cert and not is_loopback(settings.host):
                log.warning("authentication is on but TLS is off on %s: passwords and tokens cross the "
                            "network in clear text; use --tls-cert/--tls-key", settings.host)

    # ------------------------------------------------------------ identities

    def reload(self) -> None:
        """Re-read users, groups, keys and grants from the catalog now (SIGHUP)."""
        with self._lock:
            self._ident = identities.snapshot(self.catalog)
            self._visible, self._visible_generation = {}, -1

    def identities(self) -> identities.Identities:
        """The identity snapshot of the catalog's current generation (rebuilt after any write)."""
        ident = self._ident
        if ident.generation != self.catalog.generation:
            with self._lock:
                if self._ident.generation != self.catalog.generation:
                    self._ident = identities.snapshot(self.catalog)
                ident = self._ident
        return ident

    def is_admin(self, caller: Caller) -> bool:
        """True if the caller holds the admin permission (always False for anonymous callers)."""
        return self.identities().is_admin(caller.user, caller.groups)

    def may_administer(self, caller: Caller) -> bool:
        """Admin actions (rescan): everyone with authentication off, admins with it on."""
        return not self.enabled or self.is_admin(caller)

    def _patterns(self, caller: Caller) -> tuple[str, ...]:
        """Read patterns of the caller's user, of the catalog groups they are in and of the groups
        an outside token names (``/l200/analysis`` can be a grantee)."""
        return self.identities().patterns(caller.user, caller.groups)

    # ------------------------------------------------------------ visibility

    def visible_names(self, caller: Caller) -> frozenset[str] | None:
        """Names of the datasets the caller may read; None means all (auth off)."""
        if not self.enabled:
            return None
        generation = self.catalog.generation
        if self._visible_generation != generation:
            with self._lock:
                if self._visible_generation != generation:
                    self._visible = {}
                    self._visible_generation = generation
        key = (caller.user, caller.groups, caller.scopes)
        found = self._visible.get(key)
        if found is None:
            user = caller.user
            patterns = self._patterns(caller)
            # workspace datasets (home/<user>/...): the owner's own, and others' only through a
            # grant whose pattern itself starts with 'home/' (a '*' grant publishes no one's home)
            home = f"{HOME}/{user}/" if user else None
            globs = [glob.Glob(p) for p in patterns]  # admin-written: no length limit; linear matching
            home_globs = [g for g in globs if g.pattern.startswith(HOME + "/")]
            names_: set[str] = set()
            for d in self.catalog.datasets():
                if d.origin == "workspace" and d.name.startswith(HOME + "/"):
                    if (home and d.name.startswith(home)) or any(g.match(d.name) for g in home_globs):
                        names_.add(d.name)
                elif any(g.match(d.name) for g in globs):
                    names_.add(d.name)
            if caller.scopes is not None:  # a token's read scopes (WLCG, SciTokens): on top of the grants
                names_ = {n for n in names_ if may_read(caller.scopes, n)}
            found = frozenset(names_)
            with self._lock:
                if self._visible_generation == generation:
                    if len(self._visible) >= MAX_VISIBLE_KEYS:  # many token identities: start again
                        self._visible.clear()
                    self._visible[key] = found
        return found

    def could_read(self, name: str, caller: Caller) -> bool:
        """Whether a grant of the caller covers ``name`` (so telling them about it reveals nothing)."""
        if not self.enabled:
            return True
        if caller.scopes is not None and not may_read(caller.scopes, name):
            return False
        return any(glob.Glob(p).match(name[:4096]) for p in self._patterns(caller))

    def visible_datasets(self, caller: Caller) -> list[DatasetRecord]:
        """The datasets the caller may read: the single rule, for every door."""
        names = self.visible_names(caller)
        datasets = self.catalog.datasets()
        return datasets if names is None else [d for d in datasets if d.name in names]

    def dataset(self, name: str, caller: Caller) -> DatasetRecord:
        """The dataset if the caller may read it; otherwise the NotFound a missing dataset gets.
        Names are tried as given, then in the catalog's spelling (``dataset_name``)."""
        try:
            return self._dataset(name, caller)
        except NotFound:
            alias = dataset_name(name)
            if alias == name:
                raise
            return self._dataset(alias, caller)

    def _dataset(self, name: str, caller: Caller) -> DatasetRecord:
        names = self.visible_names(caller)
        if names is None:
            return self.catalog.dataset(name)
        if name in names:
            try:
                return self.catalog.dataset(name)
            except NotFound:
                pass  # removed meanwhile: answer with the caller's names, never the whole catalog's
        raise not_found("dataset", name, sorted(names))


__all__ = ["Access", "AuthConfigError", "is_loopback"]
