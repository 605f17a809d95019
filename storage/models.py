"""The store's tables, as SQLAlchemy 2.0 typed models.

Money is kept as integer nano-dollars (:class:`NanoUSD`) so sums are exact in
SQL on SQLite and PostgreSQL alike, and comes back as ``Decimal``.
Credentials are sealed with AES-256-GCM (``storage.crypto``) bound to the
row's ``uid`` and the field, so a ciphertext copied to another row fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.reader import NANO, usd


class NanoUSD(TypeDecorator[Decimal]):
    """US dollars stored as an integer count of nano-dollars (exact sums)."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Any) -> int | None:
        if value is None:
            return None
        return int(Decimal(value).quantize(NANO, rounding=ROUND_HALF_EVEN) / NANO)

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        return usd(value)  # the one conversion, shared with SQL-text reads


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the backend keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_uid() -> str:
    return uuid.uuid4().hex


intpk = Annotated[int, mapped_column(Integer, primary_key=True)]
timestamp = Annotated[datetime, mapped_column(UTCDateTime, default=utcnow)]
optional_timestamp = Annotated[datetime | None, mapped_column(UTCDateTime)]
money = Annotated[Decimal, mapped_column(NanoUSD)]
optional_money = Annotated[Decimal | None, mapped_column(NanoUSD)]
short_text = Annotated[str, mapped_column(String(200))]


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {str: String(200), dict[str, Any]: JSON}


class Workspace(Base):
    """A Slack team, or the terminal's own workspace (``slack_team_id`` None)."""

    __tablename__ = "workspaces"

    id: Mapped[intpk]
    slack_team_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    name: Mapped[short_text]
    created_at: Mapped[timestamp]

    connections: Mapped[list[Connection]] = relationship(
        back_populates="workspace", cascade="all, delete-orphan", passive_deletes=True
    )


class ConnectionStatus:
    PENDING = "pending"  # saved, first backfill not done yet
    OK = "ok"
    ERROR = "error"  # needs a person: credentials or team are wrong
    FAILING = "failing"  # transient trouble; last good data kept, retried


class Connection(Base):
    """One provider account (a team, an organization) connected to a workspace."""

    __tablename__ = "connections"
    __table_args__ = (
        UniqueConstraint("workspace_id", "label"),
        # One connection per provider account in a workspace: a second one
        # would count the same spend twice.
        Index("uq_connections_account", "workspace_id", "provider", "account_key", unique=True),
    )

    id: Mapped[intpk]
    uid: Mapped[str] = mapped_column(String(32), unique=True, default=new_uid)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(50))
    label: Mapped[short_text]
    account_ref: Mapped[str] = mapped_column(String(200), default="")
    """Which account the key reads, as the provider names it (``CheckResult.account_id``,
    else the non-secret credential fields joined); empty when neither says."""
    account_key: Mapped[str | None] = mapped_column(String(200))
    """``account_ref`` normalised (:func:`account_key`): what makes two connections
    the same account. Kept plain like ``account_ref``: an account id opens nothing
    without a key. NULL when the provider could not say which account a key reads
    (such connections cannot be told apart), or on a duplicate an old database had."""
    account_name: Mapped[str] = mapped_column(String(200), server_default="")
    """The account's name for people, where the provider gives one."""
    account_fields: Mapped[str | None] = mapped_column(Text)
    """The non-secret credential fields as JSON (``{"name": "value"}``), so a key can be
    replaced even when the stored one no longer decrypts. NULL on a connection made
    before it was kept: ``account_ref`` then holds those fields, joined by spaces."""
    secret_mask: Mapped[str] = mapped_column(String(40), default="")
    credentials_sealed: Mapped[str] = mapped_column(Text)
    credentials_key_id: Mapped[str] = mapped_column(String(32), index=True)
    credentials_changed_at: Mapped[timestamp]
    status: Mapped[str] = mapped_column(String(16), default=ConnectionStatus.PENDING)
    status_reason: Mapped[str | None] = mapped_column(String(40))
    status_message: Mapped[str | None] = mapped_column(Text)
    error_since: Mapped[optional_timestamp]
    """When the connection last turned to error; keys its one alert."""
    key_breakdown: Mapped[bool | None]
    """Whether the provider answers per-API-key costs; None until known."""
    last_success_at: Mapped[optional_timestamp]
    last_attempt_at: Mapped[optional_timestamp]
    backfill_days: Mapped[int] = mapped_column(Integer, default=90)
    created_by: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[timestamp]

    workspace: Mapped[Workspace] = relationship(back_populates="connections")

    CREDENTIALS_FIELD = "credentials"

    @property
    def credentials_aad(self) -> str:
        return f"connections/{self.uid}/{self.CREDENTIALS_FIELD}"


def account_key(account_ref: str) -> str:
    """How an account id compares: whatever its case and spacing (ids are often UUIDs)."""
    return " ".join(account_ref.split()).lower()


class ProviderProfile(Base):
    """What the host knows of a provider without loading it, as the engine last saw it.

    Reports are read without importing any provider (a terminal report must answer at
    once), yet they word a provider's figures in its words: its display name, how far
    back a sync reaches, the caveats its figures carry. The engine records them here
    whenever it uses a provider, so every surface reads them from the store.
    """

    __tablename__ = "provider_profiles"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(100))
    max_backfill_days: Mapped[int] = mapped_column(Integer)
    settle_hours: Mapped[int] = mapped_column(Integer)
    caveats: Mapped[str] = mapped_column(Text, default="[]")
    """JSON list of sentences (``providers.types.caveats``)."""
    key_page: Mapped[str] = mapped_column(Text, default="")
    no_spend_hint: Mapped[str] = mapped_column(Text, default="")
    recorded_at: Mapped[timestamp]


class DailyCost(Base):
    """The cost of one model (and API key, where known) on one UTC day."""

    __tablename__ = "daily_costs"
    __table_args__ = (
        UniqueConstraint("connection_id", "day", "model", "api_key_id"),
        # Reports filter a workspace's days and sum by model: covering index.
        Index("ix_daily_costs_report", "workspace_id", "day", "model", "connection_id", "cost"),
        # One connection's days (digests and reports filtered to a team): covering index.
        Index("ix_daily_costs_connection", "connection_id", "day", "model", "cost"),
    )

    id: Mapped[intpk]
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    day: Mapped[date]
    model: Mapped[short_text]
    api_key_id: Mapped[str] = mapped_column(String(100), default="")
    cost: Mapped[money]


class WorkspaceDailyTotal(Base):
    """Each workspace's cost per UTC day and model: the rollup reports read.

    Kept exact by the writer, which adds each sync's difference in the same
    transaction that replaces the connection's rows, so a month's report
    reads a few hundred rows instead of one per connection.
    """

    __tablename__ = "workspace_daily_totals"

    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    cost: Mapped[money]


class ApiKeyName(Base):
    """The readable name of a provider API key seen in the breakdown."""

    __tablename__ = "api_key_names"

    connection_id: Mapped[int] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    api_key_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[short_text]


class ModelSeen(Base):
    """When a model first appeared for a connection (new models are tracked)."""

    __tablename__ = "models_seen"

    connection_id: Mapped[int] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    first_day: Mapped[date]
    first_seen_at: Mapped[timestamp]


class FetchedSpan(Base):
    """UTC days ``first_day``..``last_day`` (inclusive) a sync fetched completely.

    Written with the costs they cover, in the same transaction, and merged
    with overlapping or adjacent spans on write, so a connection synced every
    day keeps one row: a report tells "no spend" from "never fetched" by
    reading a row or two per connection.
    """

    __tablename__ = "fetched_spans"
    __table_args__ = (Index("ix_fetched_spans_workspace", "workspace_id", "last_day"),)

    connection_id: Mapped[int] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    first_day: Mapped[date] = mapped_column(primary_key=True)
    last_day: Mapped[date]
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))


class ProvisionalDay(Base):
    """A UTC day a sync fetched before it settled: its figure may still change.

    Written with the day's costs, in the same transaction: a day fetched
    after ``settles_at`` loses its row, which is how every figure tells a
    final day from a provisional one (``bot.figures``). Only the last day or
    two of each connection are here at any time.
    """

    __tablename__ = "provisional_days"
    __table_args__ = (Index("ix_provisional_days_workspace", "workspace_id", "day"),)

    connection_id: Mapped[int] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)
    settles_at: Mapped[datetime] = mapped_column(UTCDateTime)
    """The day's end plus the provider's settle time: a fetch after this is final."""


class UnitCost(Base):
    """The cost of one kind of usage (the provider's ``unit_type``) of one model on one
    UTC day: where the money goes beyond the model (input, cached, output, images...).

    Best effort: the provider may not answer it, so which days it covers is kept
    apart (:class:`UnitCostSpan`), never read from ``fetched_spans``.
    """

    __tablename__ = "unit_costs"
    __table_args__ = (Index("ix_unit_costs_workspace", "workspace_id", "day"),)

    connection_id: Mapped[int] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    unit_type: Mapped[str] = mapped_column(String(200), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    cost: Mapped[money]


class UnitCostSpan(Base):
    """UTC days ``first_day``..``last_day`` whose costs by unit type were fetched
    completely: merged like :class:`FetchedSpan`, and written with those costs."""

    __tablename__ = "unit_cost_spans"

    connection_id: Mapped[int] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    first_day: Mapped[date] = mapped_column(primary_key=True)
    last_day: Mapped[date]
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))


class InvoiceLineUnits(Base):
    """The latest invoice preview's units per model and unit type (token counts for the
    billing cycle so far), replaced at every sync that reads the invoice."""

    __tablename__ = "invoice_line_units"

    connection_id: Mapped[int] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    unit_type: Mapped[str] = mapped_column(String(200), primary_key=True)
    invoice_month: Mapped[date | None]
    num_units: Mapped[int] = mapped_column(BigInteger)
    amount_usd: Mapped[money]
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)


class BillingState(Base):
    """The latest live billing figures for a connection, where known."""

    __tablename__ = "billing_states"

    connection_id: Mapped[int] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    """When the figures were read (the sync's time)."""
    invoice_month: Mapped[date | None]
    """The first day of the billing cycle the invoice preview is for, where known."""
    month_to_date_usd: Mapped[optional_money]
    """The bill so far for ``invoice_month``, as the provider states it (``bill_source``)."""
    prepaid_credit_usd: Mapped[optional_money]
    """Prepaid credit left: ``prepaid_total_usd`` minus ``prepaid_used_usd``."""
    spending_limit_usd: Mapped[optional_money]
    invoiced_usd: Mapped[optional_money]
    """The cycle's spend beyond prepaid credit (the bill so far minus credit used)."""
    bill_source: Mapped[str | None] = mapped_column(String(8))
    """Where the bill was read (``providers.types.BillSource``): the invoice's own totals,
    or its lines added up when it stated none. None: read before this was kept."""
    subtotal_usd: Mapped[optional_money]
    """Before tax, where stated: what the usage series is set against."""
    tax_usd: Mapped[optional_money]
    total_usd: Mapped[optional_money]
    """After tax, before the provider's corrections, where stated."""
    total_with_corrections_usd: Mapped[optional_money]
    prepaid_total_usd: Mapped[optional_money]
    prepaid_used_usd: Mapped[optional_money]


class Invoice(Base):
    """A closed month's invoice for a connection, as the provider last listed it.

    One row per month asked for: its status (``providers.types.InvoiceStatus``,
    ``not_listed`` when the provider listed none for the month, ``unreadable``
    with the ``problem`` when it could not be read) and amounts. Asked for again
    until its status is final.
    """

    __tablename__ = "invoices"

    connection_id: Mapped[int] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    month: Mapped[date] = mapped_column(primary_key=True)
    """The billing month's first day."""
    status: Mapped[str] = mapped_column(String(32))
    total_usd: Mapped[optional_money]
    """What is charged, tax included."""
    subtotal_usd: Mapped[optional_money]
    """Before tax: what the usage series is set against."""
    tax_usd: Mapped[optional_money]
    number: Mapped[str] = mapped_column(String(200), default="")
    problem: Mapped[str | None] = mapped_column(Text)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    """When it was read (the sync's time)."""


class SyncRun(Base):
    """One attempt to sync one connection, kept for status and debugging."""

    __tablename__ = "sync_runs"

    id: Mapped[intpk]
    connection_id: Mapped[int] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), index=True
    )
    trigger: Mapped[str] = mapped_column(String(16))  # backfill | daily | force
    window_start: Mapped[date]
    window_end: Mapped[date]  # inclusive
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[optional_timestamp]
    outcome: Mapped[str] = mapped_column(String(16), default="running")  # ok | error
    reason: Mapped[str | None] = mapped_column(String(40))
    message: Mapped[str | None] = mapped_column(Text)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    total_usd: Mapped[optional_money]
    duration_ms: Mapped[int | None]
    worker: Mapped[str | None] = mapped_column(String(100))
    """The process that ran it (``host:pid``): the daily sync is shared by every replica."""


# Slack's multi-workspace OAuth: installations and OAuth states.
# Appended as a unit; `func` builds the installer identity index below.


class SlackInstallation(Base):
    """One Slack installer's install of the app in a workspace or org.

    The tokens, and everything else slack_sdk's ``Installation`` carries, are
    sealed together in ``sealed`` (AAD ``slack_installations/<uid>/installation``);
    the plain columns are only what lookups and scheduling need. A workspace
    install has ``team_id``; an org-wide install has ``enterprise_id`` and, in
    Slack's data, no team.
    """

    __tablename__ = "slack_installations"

    id: Mapped[intpk]
    uid: Mapped[str] = mapped_column(String(32), unique=True, default=new_uid)
    client_id: Mapped[str] = mapped_column(String(64))
    app_id: Mapped[str | None] = mapped_column(String(32))
    enterprise_id: Mapped[str | None] = mapped_column(String(32))
    team_id: Mapped[str | None] = mapped_column(String(32), index=True)
    team_name: Mapped[str | None] = mapped_column(String(200))
    user_id: Mapped[str] = mapped_column(String(32))
    """The installer."""
    is_enterprise_install: Mapped[bool] = mapped_column(default=False)
    installed_at: Mapped[timestamp]
    bot_token_expires_at: Mapped[optional_timestamp]
    """Not secret; kept plain to find tokens that are about to expire."""
    sealed: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(32), index=True)

    SEALED_FIELD = "installation"

    @property
    def sealed_aad(self) -> str:
        return f"slack_installations/{self.uid}/{self.SEALED_FIELD}"


class InboundSeen(Base):
    """A Slack click or event already handled (bot/slack/replays.py), kept an hour."""

    __tablename__ = "inbound_seen"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class SlackOAuthState(Base):
    """An OAuth ``state`` issued at the start of an install, usable once."""

    __tablename__ = "slack_oauth_states"

    state: Mapped[str] = mapped_column(String(64), primary_key=True)
    expire_at: Mapped[datetime] = mapped_column(UTCDateTime)


# One row per installer: re-saving (a reinstall, a token rotation) updates it.
# coalesce() because NULLs never collide in a unique index, and a workspace
# install has no enterprise while an org-wide one has no team.
Index(
    "uq_slack_installations_installer",
    SlackInstallation.client_id,
    func.coalesce(SlackInstallation.enterprise_id, ""),
    func.coalesce(SlackInstallation.team_id, ""),
    SlackInstallation.user_id,
    unique=True,
)


class DigestSubscription(Base):
    """A channel that gets a daily, weekly or monthly spend digest."""

    __tablename__ = "digest_subscriptions"
    __table_args__ = (
        Index("uq_digest_subscriptions_schedule", "workspace_id", "schedule_key", unique=True),
    )

    id: Mapped[intpk]
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    channel_id: Mapped[str] = mapped_column(String(32))
    channel_name: Mapped[str] = mapped_column(String(200), default="")
    at_time: Mapped[str] = mapped_column(String(5), default="09:00")  # HH:MM local
    tz: Mapped[str] = mapped_column(String(64), default="UTC")
    every: Mapped[str] = mapped_column(String(8), default="day")  # day | week | month
    connection_id: Mapped[int | None] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE")
    )
    quiet_min_usd: Mapped[optional_money]
    """Post only when the period's spend passed this amount..."""
    quiet_change_pct: Mapped[int | None]
    """...or changed by more than this percentage against the period before."""
    chart: Mapped[bool] = mapped_column(default=False, server_default=false())
    """A daily digest's chart, opted in with ``--chart``; weekly and monthly always have one."""
    paused_reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[timestamp]
    schedule_key: Mapped[str | None] = mapped_column(String(400))
    """Everything that decides what it posts, where and when (:func:`digest_schedule_key`):
    a second digest that would post the same thing is refused. NULL only for a repeat
    saved before that rule (migration 0055), which keeps posting until removed."""


def digest_schedule_key(
    channel_id: str,
    at_time: str,
    tz: str,
    every: str,
    connection_id: int | None,
    quiet_min_usd: Decimal | None,
    quiet_change_pct: int | None,
    chart: bool,
) -> str:
    """What makes two digests the same one: channel, time, zone, frequency, scope and
    options. A weekly or monthly digest always has its chart, so ``chart`` counts only for
    a daily one; an amount counts to the nano-dollar, however it was typed."""
    quiet_min = (
        "-"
        if quiet_min_usd is None
        else str(int(Decimal(quiet_min_usd).quantize(NANO, rounding=ROUND_HALF_EVEN) / NANO))
    )
    return "|".join(
        (
            channel_id,
            at_time,
            tz,
            every,
            "all" if connection_id is None else str(connection_id),
            quiet_min,
            "-" if quiet_change_pct is None else str(quiet_change_pct),
            "chart" if chart and every == "day" else "",
        )
    )


def schedule_of(sub: DigestSubscription) -> str:
    """A saved digest's :func:`digest_schedule_key`."""
    return digest_schedule_key(
        sub.channel_id,
        sub.at_time,
        sub.tz,
        sub.every,
        sub.connection_id,
        sub.quiet_min_usd,
        sub.quiet_change_pct,
        sub.chart,
    )


def repeated_digests(subscriptions: Iterable[DigestSubscription]) -> dict[int, int]:
    """Of a workspace's digests, each repeat's id and the digest it repeats: the first
    saved of each schedule is the one posted, a later one with the same schedule (kept
    from before repeats were refused, migration 0063) is not."""
    firsts: dict[str, int] = {}
    repeats = {}
    for sub in sorted(subscriptions, key=lambda s: s.id):
        first = firsts.setdefault(schedule_of(sub), sub.id)
        if first != sub.id:
            repeats[sub.id] = first
    return repeats


class Budget(Base):
    """A monthly budget: alerts once per threshold per month, and on forecast."""

    __tablename__ = "budgets"

    id: Mapped[intpk]
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    connection_id: Mapped[int | None] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE")
    )
    amount_usd: Mapped[money]
    thresholds: Mapped[str] = mapped_column(String(100), default="50,80,100")
    channel_id: Mapped[str | None] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[timestamp]

    @property
    def threshold_list(self) -> list[int]:
        return sorted({int(t) for t in self.thresholds.split(",") if t.strip()})


class AlertRoute(Base):
    """Where a connection's (or, without one, the workspace's) alerts go."""

    __tablename__ = "alert_routes"
    __table_args__ = (UniqueConstraint("workspace_id", "connection_key"),)

    id: Mapped[intpk]
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    connection_id: Mapped[int | None] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE")
    )
    connection_key: Mapped[int] = mapped_column(Integer, default=0)
    """connection_id, or 0 for the workspace default (NULLs never collide)."""
    channel_id: Mapped[str | None] = mapped_column(String(32))
    """None for a route that only adds places (email): its Slack alerts go where they would."""
    webhook_sealed: Mapped[str | None] = mapped_column(Text)
    webhook_key_id: Mapped[str | None] = mapped_column(String(32), index=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True, default=new_uid)
    created_by: Mapped[str] = mapped_column(String(100), default="")

    @property
    def webhook_aad(self) -> str:
        return f"alert_routes/{self.uid}/webhook"


class AlertEmail(Base):
    """An address a route's alerts are emailed to; a route has a few at most.

    The address is personal data, so it is sealed like a webhook URL: a copy of
    the database (a backup, or a reader who may only run reports) does not list
    the team's addresses. The ledger and the logs name it by its number.
    """

    __tablename__ = "alert_emails"

    id: Mapped[intpk]
    route_id: Mapped[int] = mapped_column(
        ForeignKey("alert_routes.id", ondelete="CASCADE"), index=True
    )
    uid: Mapped[str] = mapped_column(String(32), unique=True, default=new_uid)
    address_sealed: Mapped[str] = mapped_column(Text)
    address_key_id: Mapped[str] = mapped_column(String(32), index=True)
    created_by: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[timestamp]

    @property
    def address_aad(self) -> str:
        return f"alert_emails/{self.uid}/address"


class Delivery(Base):
    """The exactly-once ledger: one row per digest, alert or job per period.

    A process owns a key once its INSERT wins (or, after the owner died, once
    its lease ran out); ``done_at`` says the work finished. Every scheduled
    thing is keyed here, so several processes, restarts and cron runs never
    repeat it.
    """

    __tablename__ = "deliveries"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    workspace_id: Mapped[int | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    claimed_by: Mapped[str] = mapped_column(String(100))
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    first_claimed_at: Mapped[optional_timestamp]
    """When the first attempt began: an earlier attempt's post is not older."""
    done_at: Mapped[optional_timestamp]
    outcome: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str | None] = mapped_column(String(16))
    """``pending`` (owed, retried until delivered or 7 days old), ``delivered``,
    ``expired``; NULL for work that is simply done or in hand."""
    payload: Mapped[str | None] = mapped_column(Text)
    """An alert still owed, as JSON: sent from here when its situation has passed."""


class PostedMessage(Base):
    """A scheduled message Slack took: where it is, and the figure it headlined.

    Kept so a later run can correct it in place (``chat.update``) when a sync
    moves that figure, and can tell a post that landed from one that did not
    without reading the channel. ``key`` is the delivery ledger's key of the
    post (a digest's, or an alert's for one place).
    """

    __tablename__ = "posted_messages"
    __table_args__ = (Index("ix_posted_messages_open", "final", "posted_at"),)

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # digest | alert
    channel_id: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    headline: Mapped[dict[str, Any] | None]
    """What its headline figure is (scope and days) and the amount shown, as JSON."""
    shown_usd: Mapped[optional_money]
    """The headline amount the message shows now (after any correction)."""
    corrections: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    checked_at: Mapped[optional_timestamp]
    """When a run last compared its figure with the store (only a later sync can move it)."""
    final: Mapped[bool] = mapped_column(default=False, server_default=false())
    """Its figure can no longer change (every day settled): no more checks."""
    incident: Mapped[str | None] = mapped_column(String(200), index=True)
    """An alert's incident (``bot.alerts``): its follow-ups reply in the thread of the
    incident's first post at the same place (the row whose ``thread_ts`` is empty)."""
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    """The ts of the message this one replied to, for a reply in a thread."""


class AlertIncident(Base):
    """An incident someone acknowledged (``bot.alerts``): who, and when.

    Acknowledged, an incident sends no more reminders ("still failing"); its
    other follow-ups ("working again", a spike that doubles) still come.
    """

    __tablename__ = "alert_incidents"

    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    acked_by: Mapped[str] = mapped_column(String(32))
    acked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlertSilence(Base):
    """An alert rule held back: snoozed until a time, or muted until an admin unmutes it.

    A rule is what an alert is about (``bot.alerts.rule_of``): one budget, one
    connection's spikes, one connection's sync failures. While it is silenced
    nothing of it is posted (a situation still on when it ends is posted then),
    except the "working again" that closes an incident already posted.
    """

    __tablename__ = "alert_silences"
    __table_args__ = (UniqueConstraint("workspace_id", "rule"),)

    id: Mapped[intpk]
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    rule: Mapped[str] = mapped_column(String(100))
    snoozed_until: Mapped[optional_timestamp]
    snoozed_by: Mapped[str | None] = mapped_column(String(32))
    muted_by: Mapped[str | None] = mapped_column(String(32))
    """Set while muted: only an admin mutes, and ``alerts unmute`` undoes it."""
    muted_at: Mapped[optional_timestamp]


class HomeViewer(Base):
    """Someone who opened the App Home tab lately, in a Slack team (``bot.slack.home``).

    In the store, not in a server's memory, so that behind a load balancer every
    replica's viewers are re-published after a change, once, by one process.
    """

    __tablename__ = "home_viewers"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HomeRound(Base):
    """A Slack team's open Home tabs: what they last showed, and the re-publish due.

    A change (a sync, a setup command, in any process) stamps ``changed_first`` and
    ``changed_last``; once the burst settles, one process claims the round (a lease, as
    the ledger's) and publishes it to the team's recent viewers.
    """

    __tablename__ = "home_rounds"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    shown: Mapped[str | None] = mapped_column(String(64))
    """A digest of the workspace's fingerprint (``bot.home.fingerprint``) last published."""
    changed_first: Mapped[optional_timestamp]
    changed_last: Mapped[optional_timestamp]
    forced: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """A sync changed figures the fingerprint does not count: publish whatever it says."""
    started: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Rounds begun, ever: an opener's tab built meanwhile is published once more."""
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[optional_timestamp]


class NativeRefusal(Base):
    """A native Slack block (``table``, ``data_visualization``) a workspace's Slack refused
    on a surface (``message``, ``home``): later posts there send the fallback straight
    away, in every process (bot/slack/refusals.py), until it is tried again."""

    __tablename__ = "native_refusals"

    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    surface: Mapped[str] = mapped_column(String(16), primary_key=True)
    block_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    refused_at: Mapped[datetime] = mapped_column(UTCDateTime)
    error: Mapped[str] = mapped_column(String(200))
    """What Slack answered, with the first of its messages."""


@dataclass(frozen=True)
class Sealed:
    """A column holding a sealed secret: key checks and rotation cover them all."""

    model: type[Base]
    token_attr: str
    key_id_attr: str
    aad: Callable[[Any], str]

    @property
    def key_id_column(self) -> Any:
        return getattr(self.model, self.key_id_attr)


SEALED = (
    Sealed(Connection, "credentials_sealed", "credentials_key_id", lambda row: row.credentials_aad),
    Sealed(SlackInstallation, "sealed", "key_id", lambda row: row.sealed_aad),
    Sealed(AlertRoute, "webhook_sealed", "webhook_key_id", lambda row: row.webhook_aad),
    Sealed(AlertEmail, "address_sealed", "address_key_id", lambda row: row.address_aad),
)
