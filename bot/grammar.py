"""The command grammar shared by the terminal and the ``/xai-usage`` command.

One table of commands and options; ``parse`` turns words into a
:class:`Command` or raises :class:`UsageError` with the closest valid
spelling and the usage line, and ``words`` spells a command back (what a
Slack button carries; :func:`quoted` is the one quoter of a word). Each
surface (the terminal, Slack) registers its handlers in a :class:`Handlers`
keyed by these names, so the commands are declared here once, and ``help``
is rendered from them. No Slack, no I/O, no provider: ``connect`` takes
whatever non-secret fields the chosen provider declares as ``--field VALUE``
(:func:`field_options`), checked where the provider is known.
"""

from __future__ import annotations

import difflib
import re
import shlex
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Generic, TypeVar

from bot.formatting import ZERO_WIDTH_SPACE
from bot.numbers import decimal_number, whole_number

REPORTS = ("today", "yesterday", "week", "month", "last-month", "range")
MAX_LABEL_LENGTH = 80
"""A new connection's label: it heads report rows and Slack messages."""
MAX_VALUE_LENGTH = 2000
"""Any other word or value: enough for a webhook URL, not for a pasted file."""
MAX_LATENCY_SECONDS = 60.0
MAX_DAYS = 3660
"""``--days`` at most, whatever the provider: each provider's own reach (how many days
back it keeps costs) is checked where the provider is known."""
FIELD_OPTIONS = frozenset({"connect"})
"""Commands whose other ``--name VALUE`` options are the provider's declared non-secret
credential fields (``--team-id``), checked against the provider by the handler."""
MAX_PAGE = 100_000
"""``--page`` at most: far past any list's end, which is said as such."""
GROUPINGS = ("model", "day", "week", "month", "connection", "key")
FORMATS = ("table", "json", "csv", "png", "svg", "pdf")
OPENS_A_FORM = ("range", "alerts")
"""Typed in Slack without their arguments, these open a form (bot/slack/forms.py)."""

_GROUPING_ALIASES = {
    "models": "model",
    "days": "day",
    "daily": "day",
    "weeks": "week",
    "weekly": "week",
    "months": "month",
    "monthly": "month",
    "connections": "connection",
    "keys": "key",
    "api-key": "key",
    "api_key": "key",
    "apikey": "key",
}


@dataclass(frozen=True)
class Option:
    name: str
    help: str
    metavar: str = ""  # empty for a flag
    choices: tuple[str, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)
    integer: tuple[int, int] | None = None  # inclusive bounds
    max_length: int = MAX_VALUE_LENGTH

    @property
    def is_flag(self) -> bool:
        return not self.metavar

    def usage(self) -> str:
        return f"--{self.name}" + (f" {self.metavar}" if self.metavar else "")


OPTIONS = {
    o.name: o
    for o in (
        Option(
            "by",
            "group rows by this",
            "model|day|week|month|connection|key",
            GROUPINGS,
            _GROUPING_ALIASES,
        ),
        Option("connection", "only this connection (its label)", "LABEL"),
        Option("model", "only models matching (substring, or a glob with * and ?)", "PATTERN"),
        Option(
            "format",
            "reports: table, json, csv, or a png/svg chart; export: csv, json or pdf",
            "table|json|csv|png|svg|pdf",
            FORMATS,
        ),
        Option("output", "write to this file instead of the terminal (also -o)", "FILE"),
        Option("workspace", "the workspace, when there are several", "NAME"),
        Option("share", "post the answer in the channel instead of only to you"),
        Option("chart", "add a chart: of a report (private unless --share), or to a daily digest"),
        Option(
            "label",
            f"a name for the connection, up to {MAX_LABEL_LENGTH} characters "
            "(default: the provider's, e.g. “Production — <provider>”)",
            "LABEL",
        ),
        Option("provider", "the provider (see `providers`; default: the built-in one)", "NAME"),
        Option(
            "days",
            "how many days to fetch (at most as many as the provider keeps)",
            "N",
            integer=(1, MAX_DAYS),
        ),
        Option("port", "the port to listen on", "N", integer=(0, 65535)),
        Option("latency", "seconds of latency to add to each answer", "SECONDS"),
        Option("yes", "do not ask for confirmation"),
        Option("http", "serve HTTP even when SLACK_APP_TOKEN is set"),
        Option("no-scheduler", "serve Slack only: `xai-usage worker` does the scheduled work"),
        Option("at", "when: HH:MM for a digest; an ISO-8601 time for `jobs run`", "TIME"),
        Option("tz", "the digest's time zone, e.g. Europe/London (default: yours)", "AREA/CITY"),
        Option(
            "every",
            "how often",
            "day|week|month",
            ("day", "week", "month"),
            {"daily": "day", "weekly": "week", "monthly": "month"},
        ),
        Option("channel", "the channel to post in", "#CHANNEL"),
        Option("thresholds", "percentages of the budget that alert", "50,80,100"),
        Option("webhook", "also send each alert as JSON to this URL", "URL"),
        Option(
            "email",
            'also email each alert to this address ("Name <address>" quoted; several: '
            "comma-separated)",
            "ADDRESS",
        ),
        Option("quiet-min", "post only if the period's spend passed this many dollars", "USD"),
        Option(
            "quiet-change", "...or changed by more than this percentage", "PCT", integer=(1, 1000)
        ),
        Option(
            "page",
            "which page of a long list (Slack shows 20 digests, budgets or alert routes "
            "a page, 40 connections)",
            "N",
            integer=(1, MAX_PAGE),
        ),
    )
}

_REPORT_OPTIONS = (
    "by",
    "connection",
    "model",
    "format",
    "output",
    "workspace",
    "share",
    "chart",
)


@dataclass(frozen=True)
class CommandSpec:
    name: str
    summary: str
    args: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    surfaces: frozenset[str] = frozenset({"cli", "slack"})
    admin: bool = False
    actions: tuple[str, ...] = ()
    """For commands with sub-actions (``digest add``): the first argument."""

    def options_on(self, surface: str = "cli") -> tuple[Option, ...]:
        """The options this command takes on ``surface``: what its usage and help list."""
        return tuple(OPTIONS[name] for name in self.options if _option_on(name, surface, self.name))

    def usage(self, surface: str = "cli") -> str:
        words = [self.name, *self.args]
        words += [f"[{option.usage()}]" for option in self.options_on(surface)]
        if self.name in FIELD_OPTIONS:
            words.append("[--FIELD VALUE]")
        return " ".join(words)


def _option_on(name: str, surface: str, command: str = "") -> bool:
    """Some options only make sense on one surface."""
    if command == "digest" and name == "chart":
        return True  # a digest's chart is posted in its channel, whoever set it up
    if surface == "slack":
        if command == "export" and name == "format":
            return True  # csv, json or pdf: which file to send
        return name not in ("format", "workspace", "yes", "output")
    return name not in ("share", "chart", "page")  # a terminal lists everything at once


_CLI = frozenset({"cli"})
COMMANDS = {
    c.name: c
    for c in (
        CommandSpec("today", "spend so far today (UTC; today is partial)", (), _REPORT_OPTIONS),
        CommandSpec("yesterday", "spend yesterday (UTC)", (), _REPORT_OPTIONS),
        CommandSpec("week", "the last 7 days, today included", (), _REPORT_OPTIONS),
        CommandSpec("month", "this month to date", (), _REPORT_OPTIONS),
        CommandSpec("last-month", "the whole of last month", (), _REPORT_OPTIONS),
        CommandSpec(
            "range", "any range of UTC days, both ends included", ("FROM", "TO"), _REPORT_OPTIONS
        ),
        CommandSpec(
            "export",
            "the detail of a period as a file: PERIOD is today, yesterday, week, month, "
            "last-month or FROM TO",
            ("PERIOD", "[TO]"),
            ("by", "connection", "model", "format", "output", "workspace", "share"),
        ),
        CommandSpec(
            "connect",
            "connect an account of a provider (`help connect` lists each one's fields, given "
            "as flags): the key is tested, then stored encrypted",
            (),
            ("provider", "label", "days", "workspace"),
            admin=True,
        ),
        CommandSpec(
            "connections",
            "list connections with their status",
            (),
            ("format", "workspace", "page"),
        ),
        CommandSpec(
            "status",
            "every connection: status, last sync, month to date",
            (),
            ("format", "workspace", "page"),
        ),
        CommandSpec(
            "disconnect",
            "remove a connection, its key and its data",
            ("LABEL",),
            ("yes", "workspace"),
            admin=True,
        ),
        CommandSpec(
            "update-key",
            "give a connection a new key: tested, then stored; its data stays",
            ("LABEL",),
            ("workspace",),
            admin=True,
        ),
        CommandSpec("sync", "fetch the latest costs now", (), ("connection", "days", "workspace")),
        CommandSpec(
            "insights",
            "this week's top movers, idle API keys, where the money goes, cheaper models",
            (),
            ("connection", "share", "workspace"),
        ),
        CommandSpec("providers", "list the loaded provider plugins", (), (), _CLI),
        CommandSpec(
            "rotate-key",
            "re-encrypt every secret with the first key of XAI_USAGE_ENCRYPTION_KEY",
            (),
            (),
            _CLI,
        ),
        CommandSpec("migrate", "bring the database schema up to date", (), (), _CLI),
        CommandSpec(
            "sandbox",
            "serve a local stand-in for a provider's API, with synthetic data",
            (),
            ("provider", "port", "latency"),
            _CLI,
        ),
        CommandSpec(
            "demo",
            "the whole path against every provider's stand-in, with synthetic data",
            (),
            (),
            _CLI,
        ),
        CommandSpec(
            "digest",
            "channel digests: `digest add [#channel]`, `digest list`, `digest remove ID`",
            ("ACTION", "[#CHANNEL|ID]"),
            (
                "at",
                "tz",
                "every",
                "connection",
                "quiet-min",
                "quiet-change",
                "chart",
                "workspace",
                "page",
            ),
            admin=True,
            actions=("add", "list", "remove"),
        ),
        CommandSpec(
            "budget",
            "monthly budgets: `budget set AMOUNT`, `budget list`, `budget remove ID`",
            ("ACTION", "[AMOUNT|ID]"),
            ("connection", "channel", "thresholds", "workspace", "page"),
            admin=True,
            actions=("set", "list", "remove"),
        ),
        CommandSpec(
            "alerts",
            "where alerts go: `alerts #channel [--connection L] [--webhook URL] "
            "[--email ADDRESS]`, `alerts --email ADDRESS`, `alerts list`, "
            "`alerts remove [--connection L] [--webhook | --email [ADDRESS]]`, `alerts unmute ID`",
            ("#CHANNEL|list|remove|unmute", "[ID]"),
            ("connection", "webhook", "email", "workspace", "page"),
            admin=True,
        ),
        CommandSpec(
            "jobs",
            "`jobs run [--at TIME]`: run the daily sync, digests and alerts due now, then exit",
            ("run",),
            ("at",),
            _CLI,
            actions=("run",),
        ),
        CommandSpec(
            "serve",
            "run the Slack app and its scheduler (Socket Mode with SLACK_APP_TOKEN, else HTTP)",
            (),
            ("http", "port", "no-scheduler"),
            _CLI,
        ),
        CommandSpec(
            "worker",
            "run the scheduled work (daily sync, digests, alerts) without serving Slack",
            (),
            (),
            _CLI,
        ),
        CommandSpec("help", "this help, or one command's", ("[COMMAND]",)),
    )
}


H = TypeVar("H")


class Handlers(dict[str, H], Generic[H]):
    """One surface's handlers, keyed by the names in :data:`COMMANDS`.

    The grammar declares each command once, with the surfaces it is on; a
    surface registers its handlers here. A name the grammar does not offer on
    that surface fails at import, and :meth:`missing` (checked by a test)
    lists the commands the surface claims but does not handle yet.
    """

    def __init__(self, surface: str) -> None:
        super().__init__()
        self.surface = surface

    def handles(self, *names: str) -> Callable[[H], H]:
        def register(handler: H) -> H:
            for name in names:
                spec = COMMANDS.get(name)
                if spec is None or self.surface not in spec.surfaces:
                    raise LookupError(
                        f"`{name}` is not a {self.surface} command in bot.grammar.COMMANDS"
                    )
                self[name] = handler
            return handler

        return register

    def missing(self) -> list[str]:
        """Commands the grammar offers on this surface with no handler registered."""
        claimed = (n for n, spec in COMMANDS.items() if self.surface in spec.surfaces)
        return [n for n in claimed if n not in self]

    @staticmethod
    def unavailable(name: str) -> str:
        """The answer when a parsed command has no handler here: said, not a silent failure."""
        return f"`{name}` isn't available here; type `help` for what is."


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)


def words(name: str, *args: str, **options: Any) -> str:
    """A command as someone would type it, for a button to carry: ``parse(tokenize(...))``
    gives it back. Options are spelled with ``_`` for ``-``; None and False are left out."""
    out = [name, *(quoted(a) for a in args)]
    for key, value in options.items():
        if value is None or value is False:
            continue
        out.append(f"--{key.replace('_', '-')}")
        if value is not True:
            out.append(quoted(str(value)))
    return " ".join(out)


def command_words(command: Command, **changes: Any) -> str:
    """``command``'s own words, with some options changed (None drops one)."""
    return words(command.name, *command.args, **{**command.options, **changes})


def field_options(command: Command) -> dict[str, str]:
    """The provider fields a ``connect`` was given as flags, by field name
    (``--team-id X`` -> ``{"team_id": "X"}``): every option the grammar does not know."""
    known = COMMANDS[command.name].options
    return {
        name.replace("-", "_"): value
        for name, value in command.options.items()
        if name not in known
    }


def quoted(word: str) -> str:
    """One word as typed, so :func:`tokenize` gives it back: as it is when it can be,
    else in double quotes (a label with spaces: ``"Prod — team"``)."""
    if word and not any(c.isspace() or c in "\"'“”‘’\\" for c in word):
        return word
    # Curly quotes come back straight, as when typed (see tokenize).
    word = word.translate(_SMART_QUOTES)
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


class UsageError(Exception):
    """Words that are not a valid command. The message says what to type."""

    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage

    def __str__(self) -> str:
        return f"{self.message}\nUsage: {self.usage}" if self.usage else self.message


_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})
_FIELD_FLAG = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_PHONE_DASH = re.compile(r"(^|\s)[—–](?=[a-z])")
_SLACK_CHANNEL = re.compile(r"<#([A-Z0-9]+)(?:\|([^>]*))?>")


def tokenize(text: str) -> list[str]:
    """Split a typed command, forgiving phones' curly quotes and lone quotes."""
    # Phones turn "--by" into "—by"; a dash inside a label ("Prod — xAI") stays. Zero-width
    # spaces come along when a command is copied from a message, where they keep a label's
    # markup from rendering (bot.formatting): they are never part of what was meant.
    text = _PHONE_DASH.sub(r"\1--", text.translate(_SMART_QUOTES).replace(ZERO_WIDTH_SPACE, ""))
    try:
        return shlex.split(text)
    except ValueError:  # an unbalanced quote: fall back to plain words
        return text.replace('"', " ").replace("'", " ").split()


def _closest(word: str, candidates: list[str] | tuple[str, ...]) -> str | None:
    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def _did_you_mean(word: str, candidates: list[str] | tuple[str, ...], prefix: str = "") -> str:
    guess = _closest(word, candidates)
    return f" Did you mean `{prefix}{guess}`?" if guess else ""


def unknown_command(word: str, surface: str) -> str:
    """A word that names no command on ``surface``, said so with the nearest there is:
    ``“stauts” is not a command. Did you mean `status`?`` (typed, or asked `help` about)."""
    available = [n for n, spec in COMMANDS.items() if surface in spec.surfaces]
    return f"“{word}” is not a command.{_did_you_mean(word.lower(), available)}"


def parse(words: list[str], *, surface: str = "cli") -> Command:
    if not words:
        return Command("help")
    for word in words:
        _check_word(word)
    name, rest = words[0].lower(), words[1:]
    if name in ("-h", "--help"):
        return Command("help")
    available = [n for n, spec in COMMANDS.items() if surface in spec.surfaces]
    if name not in available:
        nearest = _closest(name, available)
        raise UsageError(
            f"{unknown_command(words[0], surface)} Type `help` for the list.",
            COMMANDS[nearest].usage(surface) if nearest else "",
        )
    spec = COMMANDS[name]
    usage = spec.usage(surface)
    allowed = [o for o in spec.options if _option_on(o, surface, name)]
    args: list[str] = []
    options: dict[str, Any] = {}
    i = 0
    while i < len(rest):
        word = rest[i]
        i += 1
        if word in ("-h", "--help"):
            return Command("help", (name,))
        if word == "-o":
            word = "--output"
        if not word.startswith("--"):
            if len(word) > MAX_VALUE_LENGTH:
                raise UsageError(
                    f"“{_clip(word)}” has {len(word):,} characters; a word may have at most "
                    f"{MAX_VALUE_LENGTH:,}.",
                    usage,
                )
            args.append(word)
            continue
        key, _, inline = word[2:].partition("=")
        key = key.lower().replace("_", "-")
        if key in allowed:
            option = OPTIONS[key]
        elif name in FIELD_OPTIONS and _FIELD_FLAG.fullmatch(key):
            option = Option(key, "a field the provider declares", "VALUE")  # judged by the handler
        else:
            raise UsageError(
                f"`{name}` has no option --{key}.{_did_you_mean(key, allowed, '--')}", usage
            )
        if option.is_flag:
            options[key] = True
            continue
        if inline:
            value = inline
        elif i < len(rest) and not rest[i].startswith("--"):
            value = rest[i]
            i += 1
            if option.metavar == "LABEL":  # labels have spaces: "Production — xAI"
                while i < len(rest) and not rest[i].startswith("--") and not _is_day(rest[i]):
                    value = f"{value} {rest[i]}"
                    i += 1
        elif name == "alerts" and key in ("webhook", "email") and args[:1] == ["remove"]:
            options[key] = True  # `alerts remove --webhook`: the webhook alone (or the emails)
            continue
        else:
            raise UsageError(f"--{key} needs a value ({option.metavar}).", usage)
        options[key] = _option_value(option, value, usage)
    if not args and surface == "slack" and name in OPENS_A_FORM:
        return Command(name, (), options)  # Slack asks for the rest in a form
    if not args and name == "alerts" and isinstance(options.get("email"), str):
        return Command(name, (), options)  # addresses alone: the channel stays as it is
    _check_args(spec, args, usage)
    return Command(name, tuple(args), options)


def _check_word(word: str) -> None:
    """Control characters (a NUL above all) never reach a handler, nor the database."""
    if any(unicodedata.category(char) == "Cc" for char in word):
        shown = "".join(f"\\x{ord(c):02x}" if unicodedata.category(c) == "Cc" else c for c in word)
        raise UsageError(
            f"“{_clip(shown)}” contains a control character (such as NUL): retype it without."
        )


BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Embeddings, overrides and isolates: invisible, they make a label read as another
("Prod\u202eiaX" shows as "ProdXai"). Right-to-left text itself needs none of them."""


def label_problem(label: str) -> str | None:
    """Why a new connection's label is refused (terminal and Slack form alike), or None."""
    if len(label) > MAX_LABEL_LENGTH:
        return (
            f"A label may have at most {MAX_LABEL_LENGTH} characters; "
            f"“{_clip(label)}” has {len(label):,}."
        )
    if any(unicodedata.category(char) == "Cc" for char in label):
        return "A label cannot contain control characters (such as NUL or a line break)."
    if ZERO_WIDTH_SPACE in label or "\ufeff" in label or "\u2060" in label:
        return "A label cannot contain invisible spaces (such as U+200B): retype it without."
    if any(char in BIDI_CONTROLS for char in label):
        return (
            "A label cannot contain characters that change the text's direction (such as "
            "U+202E, which shows what follows backwards): retype it without them."
        )
    return None


def _clip(text: str, keep: int = 40) -> str:
    return text if len(text) <= keep else f"{text[:keep]}…"


def _option_value(option: Option, value: str, usage: str) -> Any:
    if option.name == "label" and (problem := label_problem(value)):
        raise UsageError(problem, usage)
    if len(value) > option.max_length:
        raise UsageError(
            f"--{option.name} may have at most {option.max_length:,} characters; "
            f"“{_clip(value)}” has {len(value):,}.",
            usage,
        )
    if option.choices:
        lowered = option.aliases.get(value.lower(), value.lower())
        if lowered not in option.choices:
            raise UsageError(
                f"--{option.name} must be one of {', '.join(option.choices)}; got “{value}”."
                + _did_you_mean(lowered, option.choices),
                usage,
            )
        return lowered
    if option.integer:
        low, high = option.integer
        number = whole_number(value)
        if number is None or not low <= number <= high:
            raise UsageError(
                f"--{option.name} must be a whole number from {low} to {high}; got “{value}”.",
                usage,
            )
        return number
    if option.name == "latency":
        seconds = decimal_number(value)
        if seconds is None or not 0 <= seconds <= MAX_LATENCY_SECONDS:
            raise UsageError(
                f"--latency must be a number of seconds from 0 to {MAX_LATENCY_SECONDS:.0f}; "
                f"got “{value}”.",
                usage,
            )
        return seconds
    return value


def _check_args(spec: CommandSpec, args: list[str], usage: str) -> None:
    required = [a for a in spec.args if not a.startswith("[")]
    if len(args) < len(required):
        missing = " ".join(required[len(args) :])
        raise UsageError(f"`{spec.name}` needs {missing}.", usage)
    if spec.actions:
        action = args[0].lower()
        if action not in spec.actions:
            hint = _did_you_mean(action, spec.actions, f"{spec.name} ")
            can = (
                f"has one action, `{spec.name} {spec.actions[0]}`"
                if len(spec.actions) == 1
                else f"can {', '.join(spec.actions)}"
            )
            raise UsageError(f"`{spec.name}` {can}; got “{args[0]}”.{hint}", usage)
        args[0] = action
        if len(args) > len(spec.args):
            extra = args[len(spec.args)]
            raise UsageError(f"Unexpected “{extra}” after `{spec.name} {action}`.", usage)
        return
    if spec.name in ("disconnect", "update-key"):
        args[:] = [" ".join(args)]  # a label may have spaces without quotes
        return
    most = len(spec.args)
    if spec.name == "alerts" and args[:1] != ["unmute"]:
        most = 1  # an ID only after `alerts unmute`
    if len(args) > most:
        extra = args[most]
        hint = _did_you_mean(extra.lower(), list(COMMANDS))
        raise UsageError(f"Unexpected “{extra}” after `{spec.name}`.{hint}", usage)
    if spec.name == "range":
        for arg in args:
            parse_day(arg, usage)
        if parse_day(args[0], usage) > parse_day(args[1], usage):
            raise UsageError(f"FROM ({args[0]}) is after TO ({args[1]}).", usage)


def _is_day(word: str) -> bool:
    try:
        date.fromisoformat(word)
    except ValueError:
        return False
    return True


def parse_day(text: str, usage: str = "") -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"“{text}” is not a date: write it as YYYY-MM-DD, e.g. 2026-10-01.", usage
        ) from None


def slack_channel(word: str) -> tuple[str, str] | None:
    """``<#C123|general>`` (how Slack escapes a channel) as (id, name)."""
    match = _SLACK_CHANNEL.fullmatch(word)
    return (match.group(1), match.group(2) or "") if match else None
