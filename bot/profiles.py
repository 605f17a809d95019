"""What each provider says of itself, read from the store: the words a surface needs.

The host words a figure by the providers in its scope: "Daily xAI spend" for a
workspace with one provider, "Daily AI spend" for several; how far back a sync
can reach; what a provider's figures leave out (its caveats); where its keys
are made. All of it is the provider's to say (``providers.types``), yet a
terminal report is read without importing any provider: loading plugins costs
more than the report. So the engine records each provider's profile in the
store whenever it uses that provider (:func:`record`), and every surface reads
it back here (:func:`read`). A provider the store has no profile of (a
connection made before profiles were kept, and not synced since) is worded by
the defaults: its name, the contract's default reach, and no caveats.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from storage.reader import Reader

DEFAULT_REACH_DAYS = 90
DEFAULT_SETTLE_HOURS = 48
"""``providers.types``' defaults, without importing the contract (it imports httpx,
which a report never needs); tests/bot/test_profiles.py keeps them equal."""
SEVERAL = "AI"
"""How a scope of several providers (or none the store knows) names them: "AI spend"."""


@dataclass(frozen=True)
class Profile:
    """One provider as it describes itself (``providers.types``: the optional attributes)."""

    name: str
    display_name: str
    max_backfill_days: int = DEFAULT_REACH_DAYS
    settle_hours: int = DEFAULT_SETTLE_HOURS
    caveats: tuple[str, ...] = ()
    key_page: str = ""
    no_spend_hint: str = ""
    stored: bool = True
    """False for a provider the store has no profile of: worded by the defaults."""

    @property
    def own_name(self) -> str:
        """Its display name where the store has it, else "" (the caller words it neutrally)."""
        return self.display_name if self.stored else ""

    @classmethod
    def of(cls, provider: object) -> Profile:
        """A loaded provider's profile, read through the contract's helpers."""
        from providers import types

        return cls(
            name=provider.name,  # type: ignore[attr-defined]
            display_name=provider.display_name,  # type: ignore[attr-defined]
            max_backfill_days=types.max_backfill_days(provider),
            settle_hours=types.settle_hours(provider),
            caveats=types.caveats(provider),
            key_page=types.key_page(provider),
            no_spend_hint=types.no_spend_hint(provider),
        )


@dataclass(frozen=True)
class Profiles:
    """The profiles of the providers in some scope (a workspace, a connection), by name."""

    by_name: Mapping[str, Profile]

    def get(self, name: str) -> Profile:
        """``name``'s profile; the defaults, worded by its name, when none is stored."""
        return self.by_name.get(name) or Profile(name, name, stored=False)

    @property
    def scope_name(self) -> str:
        """The one provider's display name ("xAI"), or "AI" for several or none: what
        titles say ("Daily xAI spend", "AI spend")."""
        return self.name_for(self.by_name)

    def name_for(self, names: Iterable[str]) -> str:
        """:attr:`scope_name` of the providers ``names``, some of those in scope."""
        wanted = set(names)
        return (self.get(wanted.pop()).own_name or SEVERAL) if len(wanted) == 1 else SEVERAL

    @property
    def caveats(self) -> tuple[str, ...]:
        """Every caveat of the providers in scope, each once, in a stable order."""
        seen: dict[str, None] = {}
        for name in sorted(self.by_name):
            for caveat in self.by_name[name].caveats:
                seen.setdefault(caveat, None)
        return tuple(seen)

    def who(self, names: Iterable[str]) -> str:
        """The display names of ``names``' providers, joined: "xAI", "OpenAI and xAI"."""
        shown = sorted({self.get(n).display_name for n in names})
        if len(shown) <= 1:
            return "".join(shown)
        return f"{', '.join(shown[:-1])} and {shown[-1]}"


_COLUMNS = "display_name, max_backfill_days, settle_hours, caveats, key_page, no_spend_hint"


def read(reader: Reader, names: Iterable[str]) -> Profiles:
    """The stored profiles of ``names`` (those never recorded are left to the defaults)."""
    wanted = sorted(set(names))
    if not wanted:
        return Profiles({})
    marks = ", ".join(f":n{i}" for i in range(len(wanted)))
    rows = reader.rows(
        f"SELECT name, {_COLUMNS} FROM provider_profiles WHERE name IN ({marks})",
        **{f"n{i}": name for i, name in enumerate(wanted)},
    )
    return _profiles(wanted, rows)


def in_scope(reader: Reader, workspace_id: int, connection_id: int | None = None) -> Profiles:
    """The profiles of the providers a workspace's connections (or one of them) use: one
    round trip, a row per provider, however many connections there are."""
    where = "workspace_id = :w" + ("" if connection_id is None else " AND id = :c")
    params = (
        {"w": workspace_id} if connection_id is None else {"w": workspace_id, "c": connection_id}
    )
    rows = reader.rows(
        f"SELECT used.provider, {_COLUMNS} FROM (SELECT DISTINCT provider FROM connections "
        f"WHERE {where}) AS used LEFT OUTER JOIN provider_profiles ON name = used.provider",
        **params,
    )
    return _profiles([row[0] for row in rows], [row for row in rows if row[1] is not None])


def providers_of(reader: Reader, connection_ids: Iterable[int]) -> dict[int, str]:
    """Each of some connections' provider name, by connection id."""
    ids = sorted(set(connection_ids))
    if not ids:
        return {}
    marks = ", ".join(f":c{i}" for i in range(len(ids)))
    return dict(
        reader.rows(
            f"SELECT id, provider FROM connections WHERE id IN ({marks})",
            **{f"c{i}": cid for i, cid in enumerate(ids)},
        )
    )


def _profiles(names: Iterable[str], rows: Iterable[tuple]) -> Profiles:
    found = {}
    for name, display, reach, settle, caveats, page, hint in rows:
        found[name] = Profile(
            name, display, int(reach), int(settle), _caveats(caveats), page or "", hint or ""
        )
    return Profiles({name: found.get(name) or Profile(name, name, stored=False) for name in names})


def record(session, profiles: Iterable[Profile], now: datetime) -> None:
    """Store (or refresh) ``profiles``, in the caller's transaction."""
    from storage.db import upsert
    from storage.models import ProviderProfile

    for profile in profiles:
        values = {
            "display_name": profile.display_name,
            "max_backfill_days": profile.max_backfill_days,
            "settle_hours": profile.settle_hours,
            "caveats": json.dumps(list(profile.caveats)),
            "key_page": profile.key_page,
            "no_spend_hint": profile.no_spend_hint,
            "recorded_at": now,
        }
        session.execute(
            upsert(session, ProviderProfile)
            .values(name=profile.name, **values)
            .on_conflict_do_update(index_elements=["name"], set_=values)
        )


def _caveats(raw: str | None) -> tuple[str, ...]:
    try:
        found = json.loads(raw or "[]")
    except ValueError:
        return ()
    return tuple(str(c) for c in found) if isinstance(found, list) else ()
