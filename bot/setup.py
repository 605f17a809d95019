"""Digests, budgets and alert routes: the admin side of scheduled work.

One :class:`Setup` serves both surfaces. Slack passes the channel it was
typed in and the time zone Slack knows for the person; the terminal passes
a channel id and the machine's zone. Each surface brings its own
:class:`Words` (how it names channels, commands and people; Slack's are in
``bot.slack.setup_words``) and its own way to post the note that proves the
bot can post in a digest's channel.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot import formatting
from bot.grammar import Command, slack_channel
from bot.ledger import EXPIRED, PENDING
from bot.numbers import clock_time, whole_number
from bot.runtime import REDACTOR
from storage.db import Database
from storage.models import (
    AlertEmail,
    AlertRoute,
    AlertSilence,
    Budget,
    Connection,
    Delivery,
    DigestSubscription,
    new_uid,
    repeated_digests,
    schedule_of,
    utcnow,
)
from storage.repo import find_connection

WHEN = {"day": "every day", "week": "every Monday", "month": "on the 1st of each month"}
DEFAULT_AT = "09:00"
"""A digest's time unless --at says otherwise (in the digest's time zone)."""
DEFAULT_THRESHOLDS = "50,80,100"
"""The percentages of a budget that alert unless --thresholds says otherwise."""
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{4,}")
MAX_EMAILS = 10
"""Email addresses one alert route may have: a team's few (bot.mail.MAX_ADDRESSES)."""


class SetupError(Exception):
    """A digest, budget or alert route that can't be set up as asked; says why.

    ``field`` names the form field it is about, when it is about one."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


Announce = Callable[[str, str], None]
"""Post ``text`` in channel ``id``; raise :class:`CannotPost` when Slack says no."""


class CannotPost(Exception):
    """The note could not be posted: ``error`` names why, ``fix`` says what to do."""

    def __init__(self, error: str, fix: str = "") -> None:
        super().__init__(error)
        self.error = error
        self.fix = fix or error


@dataclass(frozen=True)
class Words:
    """How a surface names channels, commands and people in setup's replies.

    These are the terminal's; Slack's (links, slash commands, emoji) are
    ``bot.slack.setup_words.SLACK``.
    """

    channel_example: str = "a channel id such as C0123ABCD"
    example_channel: str = "C0123ABCD"  # what `#channel` in a suggested command becomes
    command_prefix: str = "xai-usage"
    done_mark: str = ""  # before a confirmation
    paused_mark: str = ""  # before a paused digest in `digest list`
    list_page: int = 0
    """Items a `list` shows at a time (``--page N`` for the others); 0 shows them all."""

    def channel(self, channel_id: str, name: str = "") -> str:
        return f"{channel_id} (#{name})" if name else channel_id

    def not_a_channel(self, word: str) -> str:
        return (
            f"“{word}” is not a channel id. In the terminal, give the channel's id "
            "(in Slack: open the channel's name, the id is at the bottom of About), "
            "e.g. C0123ABCD."
        )

    def command(self, words: str) -> str:
        return f"`{self.command_prefix} {words.replace('#channel', self.example_channel)}`"

    def actor(self, actor: str) -> str:
        """Who set something up, in the note posted in its channel."""
        return "An admin"

    def number(self, ident: int) -> str:
        """A digest's or budget's number at the start of a `list` line."""
        return f"{ident:>3}"

    def person(self, user_id: str) -> str:
        """Someone named in a reply (who muted an alert): a mention in Slack."""
        return f"@{user_id}" if user_id else "someone"

    def label(self, label: str) -> str:
        """A connection's label in a reply: as it is, in a terminal."""
        return label

    def references(self, text: str) -> str:
        """Text that names channels and people as Slack does (``<#C…>``, ``<@U…>``), as
        this surface shows them: ``#C…`` and ``@U…`` in a terminal."""
        return _REFERENCE.sub(lambda m: f"{m[1]}{m[2]}", text)


_REFERENCE = re.compile(r"<([#@])([A-Z0-9]+)(?:\|[^>]*)?>")
TERMINAL = Words()


@dataclass(frozen=True)
class Listed:
    """A digest or budget as a list shows it, with the command that removes it."""

    ident: int
    text: str
    """Its line without its number: ``<#C1>  every day at 09:00 (UTC), all connections``."""
    remove: str  # ``digest remove 3``
    removes: str
    """What it is, for Remove's confirmation: ``<#C1>, every day at 09:00 (UTC), all
    connections``; :data:`STOPS` says what removing it stops."""

    @property
    def kind(self) -> str:
        return self.remove.split(" ", 1)[0]


@dataclass(frozen=True)
class Listing:
    """One page of the digests or budgets (``name``): its items and where the rest are."""

    name: str  # ``digest`` or ``budget``
    items: tuple[Listed, ...]
    total: int
    page: int = 1
    size: int = 0  # items a page; 0: all on one

    @property
    def more(self) -> int:
        """Items after this page."""
        return max(0, self.total - self.page * self.size) if self.size else 0

    @property
    def next_page(self) -> str:
        return _page_words(f"{self.name} list", self.page + 1)

    @property
    def previous_page(self) -> str | None:
        return _page_words(f"{self.name} list", self.page - 1) if self.page > 1 else None


STOPS = {"digest": "It won't be posted again", "budget": "It won't alert again"}
"""What removing a digest or a budget stops, said in its confirmation and its reply."""


def _page_words(command: str, page: int) -> str:
    """``digest list --page 2``; the first page is the command alone."""
    return command if page <= 1 else f"{command} --page {page}"


@dataclass(frozen=True)
class AlertsGo:
    """Where an alert of a connection (or the workspace) goes now, the first that applies:
    its alert route's channel, the channel of the workspace's first budget or digest, or
    whoever connected it by DM (None for each that does not apply)."""

    route: str | None
    first: str | None
    person: str | None
    emails: int = 0
    """Addresses they are emailed to as well (or only)."""

    @property
    def chosen(self) -> bool:
        """Someone chose where they go: a route's channel or addresses, or a first budget's
        or digest's channel."""
        return bool(self.route or self.first or self.emails)


def alerts_go(session: Session, workspace_id: int, connection_id: int | None = None) -> AlertsGo:
    """Where alerts go, the one reading of it: what `alerts list` and `status` say, and
    whether the Home tab's checklist ticks "Choose where alerts go"."""
    from bot.jobs import alert_route, connector, first_setup_channel

    route = alert_route(session, workspace_id, connection_id, for_channel=True)
    mailing = alert_route(session, workspace_id, connection_id)
    emails = (
        session.scalar(select(func.count()).where(AlertEmail.route_id == mailing.id))
        if mailing is not None
        else 0
    )
    return AlertsGo(
        route=route.channel_id if route is not None else None,
        first=first_setup_channel(session, workspace_id),
        person=connector(session, workspace_id, connection_id),
        emails=emails or 0,
    )


def parse_channel(word: str | None, here: str | None, words: Words) -> tuple[str, str]:
    """(id, name) of ``<#C123|costs>`` (Slack escapes channels), a bare id
    (the terminal), or, with no word, the channel the command came from."""
    if not word:
        if here:
            return here, ""
        raise SetupError(f"Name a channel, e.g. {words.channel_example}.")
    found = slack_channel(word)
    if found is not None:
        return found
    if _CHANNEL_ID.fullmatch(word):
        return word, ""
    raise SetupError(words.not_a_channel(word))


MAX_USD = Decimal(10_000_000)
_USD = re.compile(r"\$?([0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(\.[0-9]{1,2})?", re.ASCII)


def parse_usd(text: str) -> Decimal:
    """Dollars and cents as typed: 500, $1,250.50. Never NaN, infinity or 1e400."""
    if not text.strip():
        raise SetupError("Enter an amount, e.g. 500.")
    match = _USD.fullmatch(text.strip())
    amount = Decimal(match.group(1).replace(",", "") + (match.group(2) or "")) if match else None
    if amount is None or not 0 < amount <= MAX_USD:
        raise SetupError(
            f"“{text[:40]}” is not an amount: give dollars, more than $0 and at most "
            f"${MAX_USD:,}, with at most 2 decimals (e.g. 500 or 1250.50)."
        )
    return amount.quantize(Decimal("0.01"))


def parse_time(text: str) -> str:
    time = clock_time(text)
    if time is None:
        raise SetupError(f"--at takes a time like 09:00; got “{text}”.")
    return f"{time[0]:02d}:{time[1]:02d}"


def check_zone(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise SetupError(
            f"“{tz}” is not a time zone: use one like Europe/London or America/New_York."
        ) from None
    return tz


def parse_thresholds(raw: str) -> str:
    """``50,80,100``, or as replies and the form's label write them: ``50%, 80%, 100%``."""
    typed = [
        whole_number(t.strip().removesuffix("%").rstrip()) for t in raw.split(",") if t.strip()
    ]
    thresholds = sorted({t for t in typed if t is not None})
    if not typed or None in typed or not all(1 <= t <= 1000 for t in thresholds):
        raise SetupError(f"--thresholds takes percentages like 50,80,100; got “{raw}”.")
    return ",".join(str(t) for t in thresholds)


def check_webhook(url: str | bool) -> str:
    """An alert webhook is an http(s) URL (``True``: ``--webhook`` typed without one)."""
    if url is True or not str(url).startswith(("https://", "http://")):
        raise SetupError("--webhook takes an http(s) URL.")
    return str(url)


def check_emails(text: str | bool):
    """The addresses ``--email`` was given (``email.headerregistry.Address`` each), or
    SetupError on the form's email field saying how to write one."""
    from bot.mail import AddressProblem, parse_addresses

    try:
        return parse_addresses("" if text is True else str(text))
    except AddressProblem as error:
        raise SetupError(str(error), field="email") from None


@dataclass(frozen=True)
class Setup:
    """One workspace's digests, budgets and alert routes, set up by ``actor``
    (a Slack user id, or ``terminal:<login>``)."""

    db: Database
    workspace_id: int
    actor: str
    words: Words = TERMINAL  # how the surface asking names channels and commands
    allow_private_webhooks: bool = False  # the operator's XAI_USAGE_WEBHOOKS_ALLOW_PRIVATE
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The operator's settings: the SMTP server that email alerts and test messages use."""

    def _connection_id(self, label: str | None) -> int | None:
        if not label:
            return None
        with self.db.session() as session:
            return find_connection(session, self.workspace_id, label).id

    def run(
        self,
        command: Command,
        *,
        here: str | None,
        default_tz: Callable[[], str],
        announce: Announce,
    ) -> str:
        """Do a ``digest``, ``budget`` or ``alerts`` command; the reply, in the surface's words.

        ``here`` is the channel the command came from (None in a terminal);
        ``default_tz`` is asked only when a digest is added without ``--tz``.
        """
        action = command.args[0] if command.args else ""
        ident = command.args[1] if len(command.args) > 1 else None
        page = command.get("page", 1)
        if command.name == "alerts":
            if action == "list":
                return self.alerts_lines(page)
            if action == "remove":
                return self.remove_route(command)
            if action == "unmute":
                return self._made(self.unmute(ident))
            route = self.route_alerts(command, here=here, announce=announce)
            return self._made(self.alerts_routed(route, command))
        if action == "list":
            if ident is not None:
                raise SetupError(self._no_number_for_list(command.name, ident))
            return self.listing_text(self.listing(command.name, page))
        if command.name == "digest":
            if action == "add":
                digest = self.add_digest(
                    command, here=here, default_tz=default_tz, announce=announce
                )
                return self._made(self.digest_added(digest))
            return self._made(f"Removed {self.remove(DigestSubscription, ident)}.")
        if action == "set":
            return self._made(
                self.budget_set(*self.replace_budget(command, here=here, announce=announce))
            )
        return self._made(f"Removed {self.remove(Budget, ident)}.")

    def _no_number_for_list(self, name: str, ident: str) -> str:
        if self.words.list_page:
            return (
                f"`{name} list` turns its pages with --page: "
                f"{self.command(f'{name} list --page {ident}')}."
            )
        return f"`{name} list` takes no number: it lists every {name}."

    def add_digest(
        self,
        command: Command,
        *,
        here: str | None,
        default_tz: Callable[[], str],
        announce: Announce,
    ) -> DigestSubscription:
        """Save a digest once a note in its channel proved the bot can post there."""
        channel_id, channel_name = parse_channel(
            command.args[1] if len(command.args) > 1 else None, here, self.words
        )
        every = command.get("every", "day")
        subscription = DigestSubscription(
            workspace_id=self.workspace_id,
            channel_id=channel_id,
            channel_name=channel_name,
            at_time=parse_time(command.get("at", DEFAULT_AT)),
            tz=check_zone(command.get("tz") or default_tz()),
            every=every,
            connection_id=self._connection_id(command.get("connection")),
            quiet_min_usd=parse_usd(command.get("quiet-min")) if command.get("quiet-min") else None,
            quiet_change_pct=command.get("quiet-change"),
            chart=bool(command.get("chart")),
            created_by=self.actor,
        )
        subscription.schedule_key = schedule_of(subscription)
        self._refuse_repeat(subscription.schedule_key)  # before its note: nothing is posted
        self.prove_channel(
            channel_id,
            f":calendar: {self.words.actor(self.actor)} set up a spend digest here, "
            f"{WHEN[every]} at {subscription.at_time} ({subscription.tz}).",
            announce,
        )
        try:
            with self.db.transaction() as session:
                session.add(subscription)
        except IntegrityError:  # the same digest, added meanwhile (another admin, a replica)
            self._refuse_repeat(subscription.schedule_key)
            raise
        return subscription

    def _refuse_repeat(self, schedule_key: str) -> None:
        """SetupError naming the digest that already posts what this one would post."""
        with self.db.session() as session:
            same = session.scalar(
                select(DigestSubscription).where(
                    DigestSubscription.workspace_id == self.workspace_id,
                    DigestSubscription.schedule_key == schedule_key,
                )
            )
        if same is not None:
            raise SetupError(
                f"Digest {same.id} already posts in {self._schedule(same)}: nothing was added. "
                f"{self.command('digest list')} lists the digests; "
                f"{self.command(f'digest remove {same.id}')} stops that one.",
                field="channel",
            )

    def digests(self) -> list[DigestSubscription]:
        return self._list(DigestSubscription)

    def set_budget(
        self, command: Command, *, here: str | None = None, announce: Announce | None = None
    ) -> Budget:
        return self.replace_budget(command, here=here, announce=announce)[0]

    def replace_budget(
        self, command: Command, *, here: str | None = None, announce: Announce | None = None
    ) -> tuple[Budget, Budget | None]:
        """The scope's budget, set or replaced; and what it replaced (a copy), if any.

        Its channel (``--channel``, else where it was typed) gets a note first, as a
        digest's and an alert route's do: a channel the bot can't post in is refused."""
        if len(command.args) < 2:
            raise SetupError("Say how much, e.g. `budget set 500`.")
        amount = parse_usd(command.args[1])
        thresholds = parse_thresholds(command.get("thresholds", DEFAULT_THRESHOLDS))
        # A budget set in a channel alerts there, unless --channel says otherwise.
        channel = command.get("channel")
        label = command.get("connection")
        connection_id = self._connection_id(label)
        channel_id = parse_channel(channel, here, self.words)[0] if channel or here else None
        if channel_id is not None and announce is not None:
            scope = self._named(label)
            self.prove_channel(
                channel_id,
                f":moneybag: {self.words.actor(self.actor)} set a {formatting.money(amount)} "
                f"monthly budget for {scope}; its alerts come here.",
                announce,
            )
        with self.db.transaction() as session:
            # One budget per scope: setting it again replaces it (and keeps its number).
            budget = session.scalar(self._budget_of(connection_id))
            if budget is None:
                budget = Budget(workspace_id=self.workspace_id, connection_id=connection_id)
                session.add(budget)
                replaced = None
            else:
                replaced = Budget(
                    amount_usd=budget.amount_usd,
                    thresholds=budget.thresholds,
                    channel_id=budget.channel_id,
                )
            budget.amount_usd = amount
            budget.thresholds = thresholds
            budget.channel_id = channel_id
            budget.created_by = self.actor
            session.flush()
            session.expunge(budget)
        return budget, replaced

    def prove_channel(
        self, channel_id: str, note: str, announce: Announce, *, meanwhile: str = ""
    ) -> None:
        """Post ``note`` in the channel something will post in: the one test, for digests,
        budgets and alert routes, typed or from a form, that the bot can post there.
        SetupError (on the form's channel field) with the fix when it can't."""
        try:
            announce(channel_id, note)
        except CannotPost as error:
            raise SetupError(
                f"I can't post in {self.channel(channel_id)}: {error.fix}. Then try again"
                f"{meanwhile}.",
                field="channel",
            ) from None

    def _budget_of(self, connection_id: int | None):
        """The statement for a scope's budget: one per scope (the first, for old stores)."""
        scope = (
            Budget.connection_id.is_(None)
            if connection_id is None
            else Budget.connection_id == connection_id
        )
        return (
            select(Budget)
            .where(Budget.workspace_id == self.workspace_id, scope)
            .order_by(Budget.id)
        )

    def budget_of(self, connection_id: int | None) -> Budget | None:
        """The budget set for a scope (a connection, or None for the whole workspace)."""
        with self.db.session() as session:
            budget = session.scalar(self._budget_of(connection_id))
            if budget is not None:
                session.expunge(budget)
            return budget

    def budgets(self) -> list[Budget]:
        return self._list(Budget)

    def remove(self, model: type, ident: str | None) -> str:
        """Delete a digest or budget of this workspace by its number; what it was, in words
        (``digest 3: <#C1>, every day at 09:00 (UTC), all connections. It won't be posted
        again``). A number that is not here (removed already, by a second click) says so."""
        what = "digest" if model is DigestSubscription else "budget"
        number = whole_number(ident or "")
        if number is None:
            raise SetupError(
                f"Give the number {self.command(f'{what} list')} shows, "
                f"e.g. {self.command(f'{what} remove 3')}."
            )
        mine = (model.id == number) & (model.workspace_id == self.workspace_id)
        with self.db.session() as session:
            row = session.scalar(select(model).where(mine))
        removed = self._removes(row) if row is not None else None
        with self.db.transaction() as session:
            gone = session.execute(delete(model).where(mine))
        if removed is None or gone.rowcount == 0:  # the second of two clicks, at once or not
            raise SetupError(
                f"{what.capitalize()} {number} is gone already (or never was): "
                f"{self.command(f'{what} list')} lists the {what}s there are."
            )
        return f"{what} {number}: {removed}. {STOPS[what]}"

    def _removes(self, item: DigestSubscription | Budget) -> str:
        """What a digest or budget is, as Remove's confirmation and reply name it."""
        if isinstance(item, DigestSubscription):
            return self._schedule(item)
        return self._budget_words(item)

    def route_alerts(
        self, command: Command, *, here: str | None = None, announce: Announce | None = None
    ) -> AlertRoute:
        """Send alerts to a channel, once a note there proved the bot can post in it; and
        by email to addresses (``--email``) once a test message reached each.

        Addresses with no channel named leave the channel as it is. Nothing is saved
        unless every check passed."""
        named = command.args[0] if command.args else None
        adding = check_emails(command.get("email")) if command.get("email") else []
        channel_id = parse_channel(named, here, self.words)[0] if named or not adding else None
        webhook = command.get("webhook")
        if webhook:
            check_webhook(webhook)
            from bot.webhooks import address_problem  # httpx: only when a webhook is set

            if problem := address_problem(webhook, allow_private=self.allow_private_webhooks):
                raise SetupError(f"Not set: {problem}.", field="webhook")
        label = command.get("connection")
        connection_id = self._connection_id(label)
        with self.db.session() as session:
            route = self._route(session, connection_id)
            kept = self._addresses(session, route)
            has_channel = bool(route and route.channel_id)
        if webhook and not (channel_id or has_channel):
            raise SetupError(
                f"A webhook goes with a channel: {self.command('alerts #channel --webhook URL')}.",
                field="webhook",
            )
        new = _new_addresses(adding, [address for _, address in kept])
        if len(kept) + len(new) > MAX_EMAILS:
            raise SetupError(
                f"Alerts for {self._named(label)} go to {len(kept)} email address"
                f"{'es' if len(kept) != 1 else ''} already; a route has {MAX_EMAILS} at most "
                f"({self.command('alerts remove --email ADDRESS')} makes room).",
                field="email",
            )
        server = self._mail_server() if new else None
        if announce is not None and channel_id is not None:
            scope = self._named(label)
            self.prove_channel(
                channel_id,
                f":bell: {self.words.actor(self.actor)} sent spend alerts for {scope} here: "
                "budgets, spikes and sync failures.",
                announce,
                meanwhile="; alerts still go where they went",
            )
        for address in new:
            self._test_message(server, address, self._named(label))
        with self.db.transaction() as session:
            route = self._route(session, connection_id)
            if route is None:
                route = AlertRoute(
                    workspace_id=self.workspace_id,
                    connection_id=connection_id,
                    connection_key=connection_id or 0,
                    uid=new_uid(),
                )
                session.add(route)
            if channel_id is not None:
                route.channel_id = channel_id
            route.created_by = self.actor
            session.flush()  # the route's id, for its addresses
            for address in new:
                row = AlertEmail(route_id=route.id, uid=new_uid(), created_by=self.actor)
                row.address_sealed = self.db.keyring.seal(str(address).encode(), row.address_aad)
                row.address_key_id = self.db.keyring.primary_key_id
                session.add(row)
            if webhook:
                REDACTOR.add(webhook)
                route.webhook_sealed = self.db.keyring.seal(webhook.encode(), route.webhook_aad)
                route.webhook_key_id = self.db.keyring.primary_key_id
        return route

    def _mail_server(self):
        """The operator's SMTP server (bot.mail), or SetupError saying what to set."""
        from bot.mail import MailNotConfigured, MailServer

        try:
            return MailServer.from_env(self.environ)
        except MailNotConfigured as error:
            raise SetupError(
                f"Not saved: {error}. Alerts still go where they went.", field="email"
            ) from None

    def _test_message(self, server, address, scope: str) -> None:
        """Prove mail reaches ``address``: a test message, or SetupError with why not."""
        from bot.mail import MailFailed, added_message, send

        try:
            send(server, added_message(server, address, scope, datetime.now(UTC)), address)
        except MailFailed as error:
            raise SetupError(
                f"Not saved: the test message to {address} was not sent: {error.reason}. "
                "Check the address (or ask the operator to check the mail server), then try "
                "again; alerts still go where they went.",
                field="email",
            ) from None

    def _addresses(self, session: Session, route: AlertRoute | None) -> list[tuple[int, object]]:
        """(number, Address) of each address ``route`` emails; one this process can't open
        (a key it lacks) is left out."""
        if route is None:
            return []
        from bot.mail import parse_addresses, route_addresses

        return [
            (int(ref), parse_addresses(text)[0])
            for ref, text in route_addresses(self.db, session, route.id)
            if text
        ]

    def _route(self, session: Session, connection_id: int | None) -> AlertRoute | None:
        """The alert route of one connection, or of all connections (key 0)."""
        return session.scalar(
            select(AlertRoute).where(
                AlertRoute.workspace_id == self.workspace_id,
                AlertRoute.connection_key == (connection_id or 0),
            )
        )

    def remove_route(self, command: Command) -> str:
        """``alerts remove [--connection L] [--webhook | --email [ADDRESS]]``: the route, or
        only its webhook, or its email addresses (those given, else all)."""
        label = command.get("connection")
        connection_id = self._connection_id(label)
        target = self._named(label)
        with self.db.transaction() as session:
            route = self._route(session, connection_id)
            if route is None:
                raise SetupError(
                    f"No alert channel is set for {target}: {self.command('alerts list')} "
                    "shows where alerts go."
                )
            if command.get("email"):
                removed = self._remove_addresses(session, route, command.get("email"), target)
            elif command.get("webhook"):
                if not route.webhook_sealed:
                    raise SetupError(f"Alerts for {target} have no webhook.")
                route.webhook_sealed = None
                route.webhook_key_id = None
                removed = f"Alerts for {target} no longer go to the webhook."
            else:
                removed = f"Alerts for {target} no longer go to {self._places(session, route)}."
                session.delete(route)
            part = command.get("email") or command.get("webhook")
            if part and not (
                route.channel_id or route.webhook_sealed or self._addresses(session, route)
            ):
                session.delete(route)  # nothing is left of it
        return f"{removed} {self.where_alerts_go(connection_id)}"

    def _remove_addresses(
        self, session: Session, route: AlertRoute, typed: str | bool, target: str
    ) -> str:
        """``alerts remove --email [ADDRESS]``: those addresses, or (bare) all of them."""
        kept = self._addresses(session, route)
        if not kept:
            raise SetupError(f"Alerts for {target} go to no email address.")
        if typed is True:
            going = kept
        else:
            from bot.mail import same_address

            asked = check_emails(typed)
            going = [(n, a) for n, a in kept if any(same_address(a, b) for b in asked)]
            if not going:
                raise SetupError(
                    f"Alerts for {target} do not go to {', '.join(map(str, asked))}: "
                    f"{self.command('alerts list')} shows the addresses they go to."
                )
        numbers = [number for number, _ in going]
        session.execute(delete(AlertEmail).where(AlertEmail.id.in_(numbers)))
        return f"Alerts for {target} no longer go by email to {_and(going)}."

    def where_alerts_go(self, connection_id: int | None = None) -> str:
        """Where an alert of a connection (or the workspace) goes now, as one sentence."""
        with self.db.session() as session:
            going = alerts_go(session, self.workspace_id, connection_id)
        change = f"{self.command('alerts #channel')} changes it."
        also = f" and by email to {_count(going.emails, 'address')}" if going.emails else ""
        if going.route:
            return f"Alerts go to {self.channel(going.route)}{also}. {change}"
        if going.first:
            return (
                f"Alerts go to {self.channel(going.first)}, where the first budget or digest was "
                f"set{also}. {change}"
            )
        if going.person:
            return f"Alerts go by direct message to <@{going.person}>{also}. {change}"
        if going.emails:
            return (
                f"Alerts go by email to {_count(going.emails, 'address')} only, to no channel: "
                f"{self.command('alerts #channel')} adds one."
            )
        return (
            "Alerts have nowhere to go yet and wait (7 days at most): "
            f"{self.command('alerts #channel')} or {self.command('alerts --email ADDRESS')} "
            "gives them a place."
        )

    def _places(self, session: Session, route: AlertRoute, *, numbered: bool = False) -> str:
        """A route's places in words: ``CALERTS and the webhook and by email to ana@…``."""
        places = [self.channel(route.channel_id)] if route.channel_id else []
        if route.webhook_sealed:
            places.append("the webhook")
        if addresses := self._addresses(session, route):
            places.append(f"by email to {_and(addresses, numbered=numbered)}")
        return " and ".join(places) or "nowhere"

    def _refusals(self, session: Session, route: AlertRoute) -> list[str]:
        """Addresses whose mail server refused the last alert for good, and why."""
        from bot.jobs import REFUSED

        lines = []
        for number, address in self._addresses(session, route):
            last = session.scalar(
                select(Delivery.outcome)
                .where(
                    Delivery.workspace_id == self.workspace_id,
                    Delivery.key.like(f"%@email {number}"),
                    Delivery.done_at.is_not(None),
                )
                .order_by(Delivery.done_at.desc())
                .limit(1)
            )
            if last and last.startswith(REFUSED):
                why = last.removeprefix(REFUSED).removeprefix(f"email {number}: ")
                lines.append(
                    f"• {address} (email {number}) refused the last alert: {why}. Check it, or "
                    f"{self.command(f'alerts remove --email {address.addr_spec}')}"
                )
        return lines

    def alerts_lines(self, page: int = 1) -> str:
        """``alerts list``: every route (a page of them in Slack), where the rest go, and
        alerts still owed."""
        with self.db.session() as session:
            routes = list(
                session.scalars(
                    select(AlertRoute)
                    .where(AlertRoute.workspace_id == self.workspace_id)
                    .order_by(AlertRoute.connection_key)
                )
            )
            labels = {
                connection_id: label
                for connection_id, label in session.execute(
                    select(Connection.id, Connection.label).where(
                        Connection.workspace_id == self.workspace_id
                    )
                )
            }
        lines = []
        size = self.words.list_page
        shown = self._page("alerts", routes, page, size, "alert routes")
        more = max(0, len(routes) - page * size) if size else 0
        with self.db.session() as session:
            for route in shown:
                who = (
                    self._named(labels.get(route.connection_id, "?"))
                    if route.connection_key
                    else "All"
                )
                lines.append(f"{who}: {self._places(session, route, numbered=True)}")
                lines += self._refusals(session, route)
        if more:
            lines.append(f"and {more} more: {self.command(_page_words('alerts list', page + 1))}")
        if not any(route.connection_key == 0 and route.channel_id for route in routes):
            lines.append(self.where_alerts_go())
        lines.append("Budgets set in a channel alert there (`budget list`).")
        lines += self.silenced_lines()
        lines += self.undelivered_lines()
        return "\n".join(lines)

    def undelivered_lines(self, limit: int = 10, now: datetime | None = None) -> list[str]:
        """Alerts still owed, and those given up on in the week before ``now``: each by
        what it says (its title) and where it could not go and why, never its ledger key."""
        from bot.jobs import PENDING_FOR

        with self.db.session() as session:
            rows = list(
                session.execute(
                    select(
                        Delivery.key,
                        Delivery.state,
                        Delivery.outcome,
                        Delivery.done_at,
                        Delivery.payload,
                    )
                    .where(
                        Delivery.workspace_id == self.workspace_id,
                        Delivery.state.in_((PENDING, EXPIRED)),
                        Delivery.key.not_like("%@%"),
                    )
                    .order_by(Delivery.first_claimed_at, Delivery.key)
                )
            )
        now = now or datetime.now(UTC)
        owed = [
            (_alert_words(payload), why)
            for _, state, why, done, payload in rows
            if state == PENDING and done is None
        ]
        expired = [
            _alert_words(payload)
            for _, state, _, done, payload in rows
            if state == EXPIRED and done is not None and now - done <= PENDING_FOR
        ]
        lines = []
        if owed:
            lines.append(
                f"{len(owed)} alert{'s' if len(owed) != 1 else ''} not delivered yet, retried "
                f"for {PENDING_FOR.days} days:"
            )
            lines += [
                f"• {what}: {self.words.references(why or 'not delivered yet')}"
                for what, why in owed[:limit]
            ]
            if len(owed) > limit:
                lines.append(f"and {len(owed) - limit} more: {self.command('alerts list')}")
        if expired:
            lines.append(
                f"{len(expired)} alert{'s' if len(expired) != 1 else ''} expired undelivered: "
                + "; ".join(expired[:limit])
                + (f"; and {len(expired) - limit} more" if len(expired) > limit else "")
            )
        return lines

    def silenced_lines(self, now: datetime | None = None) -> list[str]:
        """Alert rules muted or snoozed now, each with who did it and how to undo it."""
        now = now or datetime.now(UTC)
        lines = []
        for ident, what, until, snoozer, muter in self.silences(now):
            undo = self.command(f"alerts unmute {ident}")
            if muter is not None:
                lines.append(
                    f"{self.words.number(ident)} Muted: {what}, by {self.words.person(muter)}. "
                    f"{undo} undoes it."
                )
            else:
                lines.append(
                    f"{self.words.number(ident)} Snoozed: {what}, by "
                    f"{self.words.person(snoozer or '')} until {formatting.clock(until)}. "
                    f"{undo} ends it now."
                )
        return lines

    def silences(
        self, now: datetime
    ) -> list[tuple[int, str, datetime | None, str | None, str | None]]:
        """(number, what, snoozed until, by whom, muted by) of each rule silenced now."""
        from bot.alerts import rule_words

        with self.db.session() as session:
            rows = list(
                session.execute(
                    select(
                        AlertSilence.id,
                        AlertSilence.rule,
                        AlertSilence.snoozed_until,
                        AlertSilence.snoozed_by,
                        AlertSilence.muted_by,
                    )
                    .where(
                        AlertSilence.workspace_id == self.workspace_id,
                        or_(AlertSilence.muted_by.is_not(None), AlertSilence.snoozed_until > now),
                    )
                    .order_by(AlertSilence.id)
                )
            )
            return [
                (
                    ident,
                    rule_words(session, self.workspace_id, rule, self.words.label)
                    or "a rule no longer set up",
                    until,
                    snoozer,
                    muter,
                )
                for ident, rule, until, snoozer, muter in rows
            ]

    def unmute(self, ident: str | None) -> str:
        """``alerts unmute N``: the rule alerts again (a snooze ends too)."""
        number = whole_number(ident or "")
        with self.db.transaction() as session:
            silence = session.get(AlertSilence, number) if number is not None else None
            if silence is None or silence.workspace_id != self.workspace_id:
                raise SetupError(
                    f"No muted alerts numbered {ident or '(none)'}: "
                    f"{self.command('alerts list')} numbers them."
                )
            from bot.alerts import rule_words

            what = (
                rule_words(session, self.workspace_id, silence.rule, self.words.label)
                or "that rule"
            )
            session.delete(silence)
        return f"Unmuted: {what} alert again."

    def alert_status(self, now: datetime | None = None) -> list[str]:
        """For ``status``: where alerts go, what is muted or snoozed, and any not delivered."""
        return [
            self.where_alerts_go(),
            *self.silenced_lines(now),
            *self.undelivered_lines(limit=5, now=now),
        ]

    def _list(self, model: type) -> list:
        with self.db.session() as session:
            return list(
                session.scalars(
                    select(model).where(model.workspace_id == self.workspace_id).order_by(model.id)
                )
            )

    # -- words for both surfaces -------------------------------------------------

    def channel(self, channel_id: str, name: str = "") -> str:
        """A channel as the surface shows it: a link in Slack, id and name in a terminal."""
        return self.words.channel(channel_id, name)

    def command(self, words: str) -> str:
        return self.words.command(words)

    def _named(self, label: str | None) -> str:
        """A connection in a reply: ``“Production”`` (as the surface shows a label), or
        ``all connections``."""
        return f"“{self.words.label(label)}”" if label else "all connections"

    def digest_added(self, sub: DigestSubscription) -> str:
        from bot.digests import covers_words

        covers = covers_words(sub.every, sub.tz, (sub.created_at or utcnow()).date())
        return (
            f"Digest {sub.id}: {self._schedule(sub)}; {covers}. "
            f"{self.command(f'digest remove {sub.id}')} stops it."
        )

    def _schedule(self, sub: DigestSubscription, scope: str | None = None) -> str:
        """Where, when and what a digest posts, every setting echoed:
        ``<#C1>, every day at 09:00 (UTC), all connections, with its chart``
        (``scope``: its connection's words, when the caller has them already)."""
        return (
            f"{self.channel(sub.channel_id, sub.channel_name or '')}, "
            f"{WHEN[sub.every]} at {sub.at_time} ({sub.tz}), "
            f"{scope or self._scope(sub.connection_id)}{_quiet(sub)}{_chart(sub)}"
        )

    def _scope(self, connection_id: int | None) -> str:
        """What a digest or budget counts: ``all connections`` or ``“Production”``."""
        if connection_id is None:
            return "all connections"
        with self.db.session() as session:
            label = session.scalar(select(Connection.label).where(Connection.id == connection_id))
        return self._named(label)

    def digest_lines(self, subscriptions: Sequence[DigestSubscription]) -> str:
        """These digests as `digest list` writes them, each with its number."""
        if not subscriptions:
            return EMPTY["digest"](self)
        items = self._digest_items(subscriptions, self.digests())
        return "\n".join(f"{self.words.number(i.ident)}  {i.text}" for i in items)

    def _digest_items(
        self, shown: Sequence[DigestSubscription], every: Sequence[DigestSubscription]
    ) -> list[Listed]:
        """``shown`` as list items; ``every`` digest of the workspace tells repeats apart."""
        repeats = repeated_digests(every)
        items = []
        for sub in shown:
            paused = ""
            if sub.paused_reason:
                paused = f"  {self.words.paused_mark}paused: {sub.paused_reason}"
            repeat = (
                f"  (repeats digest {repeats[sub.id]}, not posted: "
                f"{self.command(f'digest remove {sub.id}')} removes it)"
                if sub.id in repeats
                else ""
            )
            scope = self._scope(sub.connection_id)
            text = (
                f"{self.channel(sub.channel_id, sub.channel_name or '')}  "
                f"{WHEN[sub.every]} at {sub.at_time} ({sub.tz}), {scope}"
                f"{_quiet(sub)}{_chart(sub)}{paused}{repeat}"
            )
            removes = self._schedule(sub, scope)
            items.append(Listed(sub.id, text, f"digest remove {sub.id}", removes))
        return items

    def listing(self, name: str, page: int = 1, size: int | None = None) -> Listing:
        """One page of the digests or budgets (``name``), ``size`` (else the surface's
        page) at a time: what `list` and the Home tab show, each with what Remove stops."""
        everything = self.digests() if name == "digest" else self.budgets()
        size = self.words.list_page if size is None else size
        shown = self._page(name, everything, page, size, f"{name}s")
        if name == "digest":
            items = self._digest_items(shown, everything)
        else:
            items = []
            for b in shown:
                words = self._budget_words(b)
                items.append(Listed(b.id, words, f"budget remove {b.id}", words))
        return Listing(name, tuple(items), len(everything), page, size)

    def listing_text(self, listing: Listing) -> str:
        """A page of a list as lines, with where the rest is (the terminal's, and Slack's
        where blocks are not used)."""
        if not listing.total:
            return EMPTY[listing.name](self)
        lines = [f"{self.words.number(i.ident)}  {i.text}" for i in listing.items]
        if listing.more:
            lines.append(self.more_words(listing))
        return "\n".join(lines)

    def more_words(self, listing: Listing) -> str:
        """``and 25 more: `/xai-usage digest list --page 2```."""
        return f"and {listing.more} more: {self.command(listing.next_page)}"

    def _page(self, name: str, rows: Sequence, page: int, size: int, what: str) -> Sequence:
        """Page ``page`` of ``rows``, ``size`` a page (0: all), for ``name list``; a page
        past the end says which is the last (``what``: the rows, as in "45 digests")."""
        if not size:
            return rows
        pages = max(1, -(-len(rows) // size))
        if page > pages:
            raise SetupError(
                f"There are {len(rows)} {what}, {size} a page: "
                f"{self.command(_page_words(f'{name} list', pages))} is the last."
            )
        return rows[(page - 1) * size : page * size]

    def budget_set(self, budget: Budget, replaced: Budget | None = None) -> str:
        if budget.channel_id:
            where = f"Its alerts go to {self.channel(budget.channel_id)}."
        else:
            where = self.where_alerts_go(budget.connection_id)
        if replaced is not None and replaced.channel_id != budget.channel_id:
            before = (
                self.channel(replaced.channel_id)
                if replaced.channel_id
                else "where other alerts go"
            )
            where = f"{where.rstrip('.')} (they went to {before})."
        was = f" (replaces {formatting.money(replaced.amount_usd)})" if replaced is not None else ""
        return (
            f"Budget {budget.id} for {self._scope(budget.connection_id)}: "
            f"{formatting.money(budget.amount_usd)} a month{was}, "
            f"alerts at {_percents(budget.thresholds)} and when the month-end "
            f"forecast goes over it. {where}"
        )

    def budget_lines(self, budgets: Sequence[Budget]) -> str:
        """These budgets as `budget list` writes them, each with its number."""
        if not budgets:
            return EMPTY["budget"](self)
        return "\n".join(f"{self.words.number(b.id)}  {self._budget_words(b)}" for b in budgets)

    def _budget_words(self, b: Budget) -> str:
        """``all connections, $500.00 a month, alerts at 50%, 80%, 100% in <#C1>``."""
        return (
            f"{self._scope(b.connection_id)}, {formatting.money(b.amount_usd)} a month, "
            f"alerts at {_percents(b.thresholds)}"
            + (f" in {self.channel(b.channel_id)}" if b.channel_id else "")
        )

    def alerts_routed(self, route: AlertRoute, command: Command) -> str:
        label = command.get("connection")
        target = self._named(label)
        webhook = " and to the webhook" if route.webhook_sealed else ""
        with self.db.session() as session:
            addresses = self._addresses(session, route)
        emails = f" and by email to {_and(addresses)}" if addresses else ""
        if route.channel_id:
            channel = self.channel(route.channel_id)
            return f"Alerts for {target} now go to {channel}{webhook}{emails}."
        return (
            f"Alerts for {target} now go by email to {_and(addresses)}. "
            f"{self.where_alerts_go(route.connection_id)}"
        )

    def _made(self, text: str) -> str:
        return f"{self.words.done_mark}{text}"


def _new_addresses(adding: list, kept: list) -> list:
    """The addresses of ``adding`` not already among ``kept`` (nor typed twice)."""
    from bot.mail import same_address

    new: list = []
    for address in adding:
        if not any(same_address(address, other) for other in [*kept, *new]):
            new.append(address)
    return new


def _and(addresses: list, *, numbered: bool = False) -> str:
    """``(number, Address)`` pairs as ``ana@example.com and Bob <bob@example.com>``."""
    words = [f"{a} (email {n})" if numbered else str(a) for n, a in addresses]
    return ", ".join(words[:-1]) + f" and {words[-1]}" if len(words) > 1 else "".join(words)


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'es' if n != 1 and thing.endswith('s') else 's' if n != 1 else ''}"


EMPTY: dict[str, Callable[[Setup], str]] = {
    "digest": lambda s: f"No digests yet: {s.command('digest add #channel')} sets one up.",
    "budget": lambda s: f"No budgets yet: {s.command('budget set 500')} sets one.",
}
"""What an empty list says: how to make the first."""


def _percents(thresholds: str) -> str:
    """``50,80,100`` as ``50%, 80%, 100%``."""
    return ", ".join(f"{t}%" for t in thresholds.split(","))


def _quiet(sub: DigestSubscription) -> str:
    """The quiet options a digest was set with, as the reply and the list echo them."""
    parts = []
    if sub.quiet_min_usd is not None:
        parts.append(f"over {formatting.money(sub.quiet_min_usd)}")
    if sub.quiet_change_pct is not None:
        parts.append(f"moved by more than {sub.quiet_change_pct}%")
    return f", posted only when spend {' or '.join(parts)}" if parts else ""


def _chart(sub: DigestSubscription) -> str:
    """A daily digest's opted-in chart, as the reply and the list echo it."""
    return ", with its chart" if sub.every == "day" and sub.chart else ""


def _alert_words(payload: str | None) -> str:
    """An alert kept in the ledger, by what it says: its title."""
    import json

    try:
        return str(json.loads(payload or "")["title"])
    except (ValueError, KeyError, TypeError):
        return "an alert from before titles were kept"
