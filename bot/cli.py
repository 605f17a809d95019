"""``xai-usage``: the terminal front end.

Parses with the same grammar as the slash command, calls the same services,
and renders the same templates. Errors are one clear line on stderr and a
non-zero exit; nothing is half-saved.
"""

from __future__ import annotations

import base64
import difflib
import getpass
import importlib
import os
import shlex
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO

from bot import formatting
from bot.config import ConfigError, Settings
from bot.grammar import (
    COMMANDS,
    REPORTS,
    Command,
    Handlers,
    UsageError,
    field_options,
    parse,
    tokenize,
    unknown_command,
)
from bot.reports import (
    Report,
    build_report,
    closed_month,
    nothing_connected,
    resolve_period,
    status_rows,
)
from bot.runtime import REDACTOR, Runtime, configure_logging
from storage.reader import (
    ConnectionRef,
    Reader,
    SessionReader,
    connection_by_label,
    pick_workspace,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from bot.sync import SyncResult
    from providers.types import CredentialField, Provider
    from storage.models import Connection


class _OnFirstUse(ModuleType):
    """A module imported when a command first uses it, not when ``xai-usage`` starts.

    A terminal command should answer at once: a report needs neither asyncio
    nor the template engine's import until it prints, and never Alembic or
    Slack (``tests/bot/test_cli.py`` checks what ``import bot.cli`` loads).
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(self.__name__), name)


asyncio = _OnFirstUse("asyncio")
render = _OnFirstUse("bot.render")
repo = _OnFirstUse("storage.repo")  # SQLAlchemy's ORM: not for a report read with sqlite3
tempfile = _OnFirstUse("tempfile")

# Errors whose message is written for the person at the terminal, by module.
# They are looked up in sys.modules when one is raised, so catching them
# imports nothing: an error of a module never imported cannot have happened.
USER_ERRORS = (
    ("bot.sync", "ConnectError"),
    ("providers.types", "ProviderError"),
    ("providers.manager", "UnknownProvider"),  # --provider NAME of none loaded
    ("storage.crypto", "EncryptionKeyError"),
    ("storage.crypto", "DecryptionError"),
    ("storage.reader", "NotFound"),
    ("storage.db", "StoreError"),
    ("bot.config", "ConfigError"),
    ("bot.grammar", "UsageError"),
)


def _user_message(error: Exception, settings: Settings) -> str | None:
    """The one line to print for an expected failure; None for a bug (shown in full)."""
    for module_name, class_name in USER_ERRORS:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(error, getattr(module, class_name)):
            return getattr(error, "message", None) or str(error)
    from sqlalchemy.exc import InterfaceError, OperationalError

    from storage.db import unavailable

    if isinstance(error, OperationalError | InterfaceError):
        # The store went away, or refused a write (a read-only file) mid-command.
        return str(unavailable(error, settings.database_url))
    return None


EXIT_USAGE = 2
EXIT_FAILED = 1


class Console:
    """Where output goes; tests swap the streams."""

    def __init__(
        self, out: TextIO | None = None, err: TextIO | None = None, stdin: TextIO | None = None
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.stdin = stdin or sys.stdin

    def print(self, text: str = "") -> None:
        print(text, file=self.out)

    def note(self, text: str) -> None:
        print(text, file=self.err)

    def interactive(self) -> bool:
        return self.stdin.isatty()


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so Python's exit flush does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


Handler = Callable[[Command, Runtime, Console], int]
HANDLERS: Handlers[Handler] = Handlers("cli")
handles = HANDLERS.handles


def main(
    argv: Sequence[str] | None = None,
    *,
    console: Console | None = None,
    environ: dict[str, str] | None = None,
) -> int:
    console = console or Console()
    configure_logging()
    words = list(sys.argv[1:] if argv is None else argv)
    if len(words) == 1 and " " in words[0]:
        words = tokenize(words[0])  # `xai-usage "today --by model"` works too
    try:
        command = parse(words, surface="cli")
        settings = Settings.from_env(environ)
    except UsageError as error:
        console.note(f"xai-usage: {error}")
        return EXIT_USAGE
    except ConfigError as error:
        console.note(f"xai-usage: {error}")
        return EXIT_FAILED
    handler = HANDLERS.get(command.name)
    if handler is None:
        console.note(f"xai-usage: {Handlers.unavailable(command.name)}")
        return EXIT_USAGE
    runtime = Runtime(settings, warn=lambda text: console.note(f"warning: {text}"))
    try:
        return handler(command, runtime, console)
    except KeyboardInterrupt:
        console.note("xai-usage: interrupted; nothing half-saved.")
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): what it did not read is not ours to print.
        _quiet_stdout()
        return 0
    except Exception as error:
        message = _user_message(error, settings)
        if message is None:
            raise
        console.note(f"xai-usage: {message}")
        return EXIT_FAILED
    finally:
        runtime.close()


# -- reports --------------------------------------------------------------------


@handles(*REPORTS)
def report(command: Command, runtime: Runtime, console: Console) -> int:
    fmt = command.get("format", "table")
    chart = fmt in ("png", "svg")  # drawn from a session
    result = None if chart else _report_without_sqlalchemy(command, runtime)
    if result is None:
        with runtime.db.transaction() as session:
            workspace_id = repo.resolve_workspace(session, command.get("workspace")).id
            result, connection = _report(SessionReader(session), workspace_id, command, runtime)
            if chart:
                from bot.charts import chart_data, render_chart

                drawn = chart_data(
                    session, workspace_id, result, connection_id=connection and connection.id
                )
    if chart and result.empty:  # an empty picture would say $0.00
        console.note(f"xai-usage: {nothing_connected('xai-usage')} Nothing was drawn.")
        return EXIT_FAILED
    if chart:
        _write_output(command.get("output"), render_chart(drawn, fmt), console)
        return 0
    text = {"json": render.report_json, "csv": render.report_csv}.get(fmt, render.report_table)(
        result
    ).rstrip("\n")
    if command.get("output"):
        _write_output(command.get("output"), (text + "\n").encode(), console)
    else:
        console.print(text)
    return 0


def _report(
    reader: Reader, workspace_id: int, command: Command, runtime: Runtime
) -> tuple[Report, ConnectionRef | None]:
    """The report a command asks for, and the connection it names, however the store was opened."""
    label = command.get("connection")
    connection = connection_by_label(reader, workspace_id, label) if label else None
    period = resolve_period(command, runtime.clock().date())
    _report_format(command)
    report = build_report(
        reader,
        workspace_id,
        period,
        command.get("by", "model"),
        connection=connection,
        model_pattern=command.get("model"),
        now=runtime.clock(),
    )
    return report, connection


def _report_without_sqlalchemy(command: Command, runtime: Runtime) -> Report | None:
    """The report read with sqlite3 alone, when the store allows; else None.

    A terminal report should answer at once, and importing SQLAlchemy costs
    more than the report (issue 9). Only the plain case qualifies (see
    :meth:`Runtime.sqlite_reader`): the normal way handles anything else,
    and any database error here is left to it too.
    """
    reader = runtime.sqlite_reader()
    if reader is None:
        return None
    try:
        workspace_id = pick_workspace(reader, command.get("workspace"))
        if workspace_id is None:
            return None  # none yet: the normal way makes the terminal's own
        report = _report(reader, workspace_id, command, runtime)[0]
        if closed_month(report.period, runtime.clock().date()):
            return None  # a closed month shows its invoices: read in a session
        return report
    except sqlite3.Error:
        return None
    finally:
        reader.close()


def _report_format(command: Command) -> str:
    """The format, checked before any work: pictures need a file; PDFs are exports."""
    fmt = command.get("format", "table")
    if fmt == "pdf":
        raise UsageError(
            f"A PDF is an export: `xai-usage export {command.name} --format pdf -o FILE`."
        )
    if fmt in ("png", "svg") and not command.get("output"):
        raise UsageError(
            f"--format {fmt} draws a chart into a file: add -o FILE (e.g. -o chart.{fmt})."
        )
    return fmt


def _write_output(path: str | None, data: bytes, console: Console) -> None:
    """Standard output without a path; else the file, whole or not at all."""
    if not path or path == "-":
        console.out.flush()
        buffer = getattr(console.out, "buffer", None)
        if buffer is not None:
            buffer.write(data)
            buffer.flush()
        else:
            console.out.write(data.decode())
        return
    target = Path(path).expanduser()
    partial = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=target.parent, prefix=f".{target.name}.", delete=False
        ) as handle:
            partial = Path(handle.name)
            handle.write(data)
        os.replace(partial, target)
    except OSError as error:
        if partial is not None:
            partial.unlink(missing_ok=True)
        raise ConfigError(
            f"cannot write {path}: {error.strerror or error}. Choose another --output."
        ) from None
    console.note(f"Wrote {target} ({len(data):,} bytes).")


@handles("export")
def export(command: Command, runtime: Runtime, console: Console) -> int:
    """The detail of a period (CSV, JSON) or a report for finance (PDF)."""
    from bot.exports import export_file

    if command.get("format") == "pdf" and command.get("output") in (None, "-"):
        raise UsageError("A PDF needs a file: add -o FILE (e.g. -o month.pdf).")
    with runtime.db.transaction() as session:
        workspace = repo.resolve_workspace(session, command.get("workspace"))
        made = export_file(session, workspace.id, workspace.name, command, runtime.clock())
    _write_output(command.get("output"), made.data, console)
    return 0


# -- connections ------------------------------------------------------------------


@handles("connect")
def connect(command: Command, runtime: Runtime, console: Console) -> int:
    """Every surface's connect flow (``SyncEngine.connect``), with the fields from flags,
    the provider's variables, standard input or a prompt."""
    from providers.manager import DEFAULT_PROVIDER
    from providers.types import no_spend_hint

    provider = runtime.providers.get(command.get("provider", DEFAULT_PROVIDER))
    given = _field_flags(provider, command)
    with runtime.db.transaction() as session:
        workspace_id = repo.resolve_workspace(session, command.get("workspace")).id
    engine = runtime.engine
    credentials = {
        spec.name: _credential(spec, given, runtime, console)
        for spec in provider.credential_fields
        if not spec.secret
    }
    # Told before anyone pastes a key: a malformed field, a label taken, an account
    # these fields name that is connected already.
    problems = engine.problems(
        workspace_id,
        provider.name,
        credentials,
        label=command.get("label") or "",
        backfill_days=command.get("days"),
    )
    if problems:
        from bot.sync import ConnectError

        field, problem = next(iter(problems.items()))
        raise ConnectError(problem, field=field)
    credentials |= {
        spec.name: _credential(spec, given, runtime, console)
        for spec in provider.credential_fields
        if spec.secret
    }
    console.note(f"Testing the credentials with {provider.display_name}…")
    connected = asyncio.run(
        engine.connect(
            workspace_id,
            provider.name,
            credentials,
            label=command.get("label"),
            backfill_days=command.get("days"),
            created_by=getpass.getuser(),
        )
    )
    account = f", {provider.display_name} account {connected.account}" if connected.account else ""
    console.print(
        f"Connected “{connected.label}” ({connected.mask}){account}. The key is stored "
        "encrypted and will not be shown again."
    )
    for note in connected.check.notes:
        console.print(f"Note: {note}")
    backfill = connected.backfill
    hint = (
        formatting.zero_backfill_hint(backfill.total_usd, backfill.days, no_spend_hint(provider))
        if backfill.ok
        else ""
    )
    console.print(_sync_line(backfill, verb="Backfilled") + hint)
    from bot.setup import Setup

    console.print(Setup(runtime.db, workspace_id, "").where_alerts_go(connected.connection_id))
    return 0 if connected.backfill.ok else EXIT_FAILED


def _field_flags(provider: Provider, command: Command) -> dict[str, str]:
    """The fields ``connect`` was given as flags, each one the provider declares and not a
    secret (a key typed on the command line stays in the shell's history)."""
    declared = {spec.name: spec for spec in provider.credential_fields}
    flags = {f"--{name.replace('_', '-')}": spec for name, spec in declared.items()}
    usable = [flag for flag, spec in flags.items() if not spec.secret]
    given = field_options(command)
    for name in given:
        spec = declared.get(name)
        flag = f"--{name.replace('_', '-')}"
        if spec is None:
            offered = ", ".join(usable) or "none: it needs only a key"
            guess = difflib.get_close_matches(flag, usable, n=1)
            hint = f" Did you mean `{guess[0]}`?" if guess else ""
            raise UsageError(
                f"{provider.display_name} has no field {flag}.{hint} Its fields: {offered} "
                "(`xai-usage providers` lists every provider's).",
                COMMANDS["connect"].usage("cli"),
            )
        if spec.secret:
            source = " or ".join(filter(None, ("standard input, the hidden prompt", spec.env_var)))
            raise UsageError(
                f"{spec.label} is a secret: it is never typed on the command line (it would "
                f"stay in your shell's history). Give it through {source}."
            )
    return given


def _credential(
    spec: CredentialField, given: dict[str, str], runtime: Runtime, console: Console
) -> str:
    """One field: its flag, else its environment variable, else stdin or a prompt."""
    option = spec.name.replace("_", "-")
    value = given.get(spec.name)
    for variable in (spec.env_var, *spec.env_aliases) if spec.env_var else ():
        if value is None:
            value = runtime.settings.environ.get(variable)
    if value is None and spec.secret:
        value = _read_secret(spec.label, console)
    if value is None and console.interactive():
        value = input(f"{spec.label}{' (optional: Enter to skip)' if spec.optional else ''}: ")
    if not value and spec.optional:
        return ""
    if not value:
        source = (
            f"--{option}"
            if not spec.secret
            else (f"standard input or {spec.env_var}" if spec.env_var else "standard input")
        )
        from bot.sync import ConnectError

        raise ConnectError(f"{spec.label} is required: give it with {source}.", field=spec.name)
    if spec.secret:
        REDACTOR.add(value.strip())
    return value


def _named_connection(session: Session, command: Command) -> Connection:
    """The connection a command names first, in the workspace ``--workspace`` picks."""
    workspace = repo.resolve_workspace(session, command.get("workspace"))
    return repo.find_connection(session, workspace.id, command.args[0])


@handles("update-key")
def update_key(command: Command, runtime: Runtime, console: Console) -> int:
    """A new key for a connection (the old one was revoked or expired); data stays."""
    with runtime.db.transaction() as session:
        connection = _named_connection(session, command)
        connection_id, label = connection.id, connection.label
        provider = runtime.providers.get(connection.provider)
    secrets = {
        spec.name: _credential(spec, {}, runtime, console)
        for spec in provider.credential_fields
        if spec.secret
    }
    console.note(f"Testing the new key with {provider.display_name}…")
    updated = asyncio.run(runtime.engine.update_key(connection_id, secrets))
    console.print(
        f"New key for “{label}” ({updated.mask}), stored encrypted; its data is kept "
        "and its error is cleared."
    )
    console.print(_sync_line(updated.sync))
    return 0 if updated.sync.ok else EXIT_FAILED


def _read_secret(label: str, console: Console) -> str | None:
    if console.interactive():
        return getpass.getpass(f"{label} (input hidden): ")
    line = console.stdin.readline()
    return line.strip() or None


@handles("connections", "status")
def connections(command: Command, runtime: Runtime, console: Console) -> int:
    with runtime.db.transaction() as session:
        workspace = repo.resolve_workspace(session, command.get("workspace"))
        rows = status_rows(session, workspace.id, runtime.clock())
    if command.get("format") == "json":
        import json

        console.print(json.dumps([row.as_json() for row in rows], indent=2))
        return 0
    from bot.setup import Setup

    alerts = Setup(runtime.db, workspace.id, "").alert_status(runtime.clock())
    console.print(
        render.render("status.txt.j2", rows=rows, workspace=workspace, alerts=alerts).rstrip("\n")
    )
    return 0


@handles("insights")
def insights(command: Command, runtime: Runtime, console: Console) -> int:
    from bot.insights import build_insights

    with runtime.db.transaction() as session:
        workspace = repo.resolve_workspace(session, command.get("workspace"))
        connection = (
            repo.find_connection(session, workspace.id, command.get("connection"))
            if command.get("connection")
            else None
        )
        today = runtime.clock().astimezone(UTC).date()
        found = build_insights(
            session, workspace.id, today, connection, providers=runtime.providers
        )
    console.print(render.insights_text(found).rstrip("\n"))
    return 0


@handles("disconnect")
def disconnect(command: Command, runtime: Runtime, console: Console) -> int:
    with runtime.db.session() as session:
        connection = _named_connection(session, command)
        label, connection_id = connection.label, connection.id
    if not command.get("yes"):
        if not console.interactive():
            raise UsageError(
                f"Disconnecting “{label}” deletes its key and all its cost data. "
                "Add --yes to confirm."
            )
        answer = input(f"Delete “{label}”, its key and all its cost data? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            console.note("Nothing was deleted.")
            return EXIT_FAILED
    runtime.engine.disconnect(connection_id)
    console.print(f"Disconnected “{label}”: its key and cost data are deleted.")
    return 0


@handles("sync")
def sync(command: Command, runtime: Runtime, console: Console) -> int:
    engine = runtime.engine
    with runtime.db.transaction() as session:
        workspace = repo.resolve_workspace(session, command.get("workspace"))
        target = (
            repo.find_connection(session, workspace.id, command.get("connection")).id
            if command.get("connection")
            else None
        )

    def progress(result: SyncResult, done: int, total: int) -> None:
        console.note(f"[{done}/{total}] {_sync_line(result)}")

    if target is not None:
        results = asyncio.run(
            engine.sync_many(
                [target], trigger="force", force=True, days=command.get("days"), progress=progress
            )
        )
    else:
        results = asyncio.run(
            engine.sync_all(
                workspace.id,
                trigger="force",
                force=True,
                days=command.get("days"),
                progress=progress,
            )
        )
    if not results:
        console.print("No connections to sync yet: run `xai-usage connect` first.")
        return 0
    failed = [r for r in results if not r.ok]
    total = sum((r.total_usd for r in results if r.ok), formatting.Decimal(0))
    console.print(
        f"Synced {len(results) - len(failed)} of {len(results)} connection"
        f"{'s' if len(results) != 1 else ''}: {formatting.money(total)} in the "
        "windows fetched."
    )
    return EXIT_FAILED if failed else 0


def _sync_line(result: SyncResult, verb: str = "Synced") -> str:
    if result.skipped:
        return (
            f"“{result.label}” skipped: it needs attention ({result.message}) "
            f'Give it a new key with `xai-usage update-key "{result.label}"`.'
        )
    if not result.ok:
        return f"“{result.label}” failed: {result.message}"
    return (
        f"{verb} “{result.label}”: {result.days} day{'s' if result.days != 1 else ''} "
        f"({formatting.day_span(result.start, result.end)}), {result.rows} rows, "
        f"{formatting.money(result.total_usd)}."
    )


# -- operations -------------------------------------------------------------------


@handles("providers")
def providers(command: Command, runtime: Runtime, console: Console) -> int:
    """The loaded providers, where each comes from, and the fields `connect` takes."""
    for line, provider in zip(_field_lines(runtime.providers), runtime.providers, strict=True):
        console.print(f"{line.strip()}  [{type(provider).__module__}]")
    return 0


@handles("rotate-key")
def rotate_key(command: Command, runtime: Runtime, console: Console) -> int:
    changed = runtime.db.rotate_key()
    console.print(
        f"Re-encrypted {changed} secret{'s' if changed != 1 else ''} with key "
        f"{runtime.db.keyring.primary_key_id}. Older keys can now be removed from "
        "XAI_USAGE_ENCRYPTION_KEY."
    )
    return 0


@handles("migrate")
def migrate(command: Command, runtime: Runtime, console: Console) -> int:
    db = runtime.db  # opening the store migrates it
    console.print(f"The {db.backend} database is up to date.")
    return 0


@handles("sandbox")
def sandbox(command: Command, runtime: Runtime, console: Console) -> int:
    """Serve a provider's local stand-in (``StandInProvider``) until Ctrl-C."""
    from providers.manager import DEFAULT_PROVIDER
    from providers.types import StandInProvider

    provider = runtime.providers.get(command.get("provider", DEFAULT_PROVIDER))
    if not isinstance(provider, StandInProvider):
        raise UsageError(
            f"{provider.display_name} has no local stand-in to serve. Providers with one: "
            + ", ".join(p.name for p in runtime.providers if isinstance(p, StandInProvider))
            + "."
        )
    port = command.get("port", 8765)
    stand_in = provider.stand_in(host="127.0.0.1", port=port, latency=command.get("latency", 0.0))
    try:
        stand_in.start()
    except OSError as error:
        raise ConfigError(
            f"cannot listen on port {port}: {error.strerror}. Pick another with --port N."
        ) from None
    try:
        credentials = stand_in.demo_credentials
        console.print(
            f"The {provider.display_name} stand-in is serving synthetic data at {stand_in.url}"
        )
        console.print(f"  export {provider.stand_in_setting}={stand_in.url}")
        console.print(
            "  "
            + ", ".join(
                f"{spec.label} {credentials[spec.name]}"
                for spec in provider.credential_fields
                if spec.name in credentials
            )
        )
        console.print("Stop it with Ctrl-C.")
        console.out.flush()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        stand_in.stop()


@handles("demo")
def demo(command: Command, runtime: Runtime, console: Console) -> int:
    """Every loaded provider with a local stand-in (``StandInProvider``), connected side by
    side in a throwaway store, then the reports, ``status`` and ``insights`` over them."""
    from contextlib import ExitStack

    from providers.types import StandInProvider

    with_stand_ins = [p for p in runtime.providers if isinstance(p, StandInProvider)]
    if not with_stand_ins:
        raise UsageError("No loaded provider has a local stand-in to run the demo against.")
    names = ", ".join(p.display_name for p in with_stand_ins)
    console.print(
        f"Demo: everything below runs against local stand-ins for {names}. The data is synthetic.\n"
    )
    with (
        tempfile.TemporaryDirectory(prefix="xai-usage-demo-") as data_dir,
        ExitStack() as stand_ins,
    ):
        environ = {
            **os.environ,
            "XAI_USAGE_DATA_DIR": data_dir,
            "DATABASE_URL": "",  # the demo's own store, never yours
            # A throwaway key: the demo's data dies with its directory.
            "XAI_USAGE_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
        }
        steps = []
        for provider in with_stand_ins:
            stand_in = provider.stand_in(host="127.0.0.1", port=0).start()
            stand_ins.callback(stand_in.stop)
            environ[provider.stand_in_setting] = stand_in.url
            step = [
                "connect",
                "--provider",
                provider.name,
                "--label",
                f"Demo — {provider.display_name}",
            ]
            for spec in provider.credential_fields:
                value = stand_in.demo_credentials.get(spec.name, "")
                if not spec.secret:
                    step += [f"--{spec.name.replace('_', '-')}", value]
                elif spec.env_var:
                    environ[spec.env_var] = value  # as a person would export it
            steps.append(step)
        steps += [
            ["sync"],
            ["month", "--by", "connection"],
            ["month", "--by", "model"],
            ["week", "--by", "day"],
            ["status"],
            ["insights"],
        ]
        for step in steps:
            console.print(f"$ xai-usage {shlex.join(step)}")
            code = main(step, console=console, environ=environ)
            console.print()
            if code:
                return code
    console.print(
        f"That was synthetic data in a temporary directory ({Path(data_dir).name}, "
        "now deleted). Connect your own account with `xai-usage connect --provider NAME` "
        "(`xai-usage help connect` lists each provider's fields)."
    )
    return 0


@handles("serve")
def serve(command: Command, runtime: Runtime, console: Console) -> int:
    from bot.slack.server import serve as serve_slack
    from bot.slack.settings import SlackSettings

    environ = runtime.settings.environ
    settings = SlackSettings.from_env(
        environ, force_http=command.get("http", False), port=command.get("port")
    )
    log_level = environ.get("XAI_USAGE_LOG_LEVEL") or "INFO"
    if not environ.get("XAI_USAGE_LOG_LEVEL"):
        configure_logging(log_level)
    runtime.db.check_keys()  # opening migrates; both before any request is accepted
    scheduler = not command.get("no-scheduler", False)
    serve_slack(
        runtime,
        settings,
        host=environ.get("HOST") or "0.0.0.0",
        ready=lambda where: console.note(
            f"xai-usage is serving Slack ({where})"
            + ("." if scheduler else "; the scheduled work is left to `xai-usage worker`.")
        ),
        scheduler=scheduler,
        answer_processes=runtime.settings.answer_processes,
        log_level=log_level,
    )
    return 0


@handles("worker")
def worker(command: Command, runtime: Runtime, console: Console) -> int:
    """The scheduled work in a process of its own (``serve --no-scheduler`` serves Slack)."""
    from bot.ledger import process_name
    from bot.slack.server import work
    from bot.slack.settings import SlackSettings

    environ = runtime.settings.environ
    slack = bool(environ.get("SLACK_BOT_TOKEN") or environ.get("SLACK_CLIENT_ID"))
    settings = SlackSettings.from_env(environ, delivering_only=True) if slack else None
    if not environ.get("XAI_USAGE_LOG_LEVEL"):
        configure_logging("INFO")
    runtime.db.check_keys()
    posting = "posting digests and alerts to Slack" if slack else "no Slack configured"
    work(
        runtime,
        settings,
        ready=lambda: console.note(
            f"xai-usage is running the scheduled work as {process_name()} ({posting})."
        ),
    )
    return 0


# -- digests, budgets, alert routes ----------------------------------------------


@handles("digest", "budget", "alerts")
def setup_command(command: Command, runtime: Runtime, console: Console) -> int:
    """The admin side of scheduled work, from a terminal: channels are named by id."""
    from bot.setup import Setup, SetupError

    with runtime.db.transaction() as session:
        workspace = repo.resolve_workspace(session, command.get("workspace"))
        workspace_id, team_id = workspace.id, workspace.slack_team_id
    setup = Setup(
        runtime.db,
        workspace_id,
        f"terminal:{getpass.getuser()}",
        allow_private_webhooks=runtime.settings.webhooks_allow_private,
        environ=runtime.settings.environ,
    )
    try:
        reply = setup.run(
            command,
            here=None,
            default_tz=lambda: _local_zone(runtime.settings.environ),
            announce=_announcer(runtime, team_id),
        )
    except SetupError as error:
        console.note(f"xai-usage: {error}")
        return EXIT_FAILED
    console.print(reply)
    return 0


def _announcer(runtime: Runtime, team_id: str | None) -> Callable[[str, str], None]:
    """Posts ``digest add``'s note in its channel, through the bot's own token."""
    from bot.setup import SetupError

    def announce(channel: str, text: str) -> None:
        delivery = _slack_delivery(runtime)
        if delivery is None:
            raise SetupError(
                "Digests and alerts are posted in Slack: set SLACK_BOT_TOKEN (one workspace) or "
                "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (installed app) first."
            )
        try:
            delivery.announce(team_id, channel, text)
        except OSError as error:
            raise SetupError(
                f"Slack did not answer ({type(error).__name__}): nothing was saved; try again."
            ) from None

    return announce


def _local_zone(environ: dict[str, str]) -> str:
    """This machine's IANA time zone (TZ, else /etc/localtime), else UTC."""
    from zoneinfo import ZoneInfo

    candidates = [environ.get("TZ", "").lstrip(":")]
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        candidates.append(str(localtime.resolve()).partition("zoneinfo/")[2])
    for name in candidates:
        try:
            if name and ZoneInfo(name):
                return name
        except (ValueError, OSError, KeyError):
            continue
    return "UTC"


@handles("jobs")
def jobs(command: Command, runtime: Runtime, console: Console) -> int:
    from bot.jobs import check_run_time, run_due

    at = _moment(command.get("at")) if command.get("at") else runtime.clock()
    if problem := check_run_time(at, runtime.clock()):
        raise UsageError(problem)
    runtime = Runtime(runtime.settings, clock=lambda: at, warn=runtime.warn)
    delivery = _slack_delivery(runtime)
    outcome = run_due(runtime, at, delivery, daily_sync_at=runtime.settings.daily_sync_at)
    console.print(f"Jobs due at {at.isoformat()}:")
    if outcome.synced is None:
        console.print("  daily sync: not due, or already done")
    elif outcome.synced == 0:
        console.print("  daily sync: ran; no connections yet")
    else:
        plural = "s" if outcome.synced != 1 else ""
        console.print(f"  daily sync: {outcome.synced} connection{plural}")
    from bot.setup import TERMINAL  # names channels and people as a terminal shows them

    for label, keys in (
        ("digests sent", outcome.digests),
        ("digest charts shown", outcome.charts),
        ("alerts delivered", outcome.alerts),
        ("alerts pending, kept for the next run", outcome.pending),
        ("alerts expired, never delivered", outcome.expired),
        ("skipped", outcome.skipped),
        ("problems", outcome.problems),
        ("corrected in place", outcome.corrections),
    ):
        if keys:
            console.print(f"  {label}: {len(keys)}")
            for key in keys:
                console.print(f"    {TERMINAL.references(key)}")
    # Anything due that did not reach its place is a failure, for cron to report.
    undelivered = outcome.problems or outcome.pending or outcome.expired
    return EXIT_FAILED if undelivered else 0


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--at must be an ISO-8601 time such as 2026-11-23T09:00:00Z; got “{text}”."
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _slack_delivery(runtime: Runtime):
    """Slack delivery when Slack is configured; else digests and alerts wait."""
    environ = runtime.settings.environ
    if not (environ.get("SLACK_BOT_TOKEN") or environ.get("SLACK_CLIENT_ID")):
        return None
    from bot.slack.app import token_resolver
    from bot.slack.delivery import SlackDelivery
    from bot.slack.settings import SlackSettings

    settings = SlackSettings.from_env(environ, delivering_only=True)
    return SlackDelivery.of(runtime, settings, token_resolver(runtime, settings))


@handles("help")
def help_(command: Command, runtime: Runtime, console: Console) -> int:
    topic = command.args[0].lower() if command.args else None
    extra = []
    if topic == "connect":  # its fields are each provider's: loaded only to say which
        extra = ["", "Fields, by provider (`--provider NAME`):", *_field_lines(runtime.providers)]
    console.print(
        render.render(
            "help.txt.j2",
            commands=COMMANDS,
            topic=topic,
            surface="cli",
            extra=extra,
            unknown=unknown_command(topic or "", "cli"),
        ).rstrip("\n")
    )
    return 0


def _field_lines(providers) -> list[str]:
    """Each provider's fields as ``connect`` takes them: flags, and where its keys come from."""
    lines = []
    for provider in providers:
        parts = []
        for spec in provider.credential_fields:
            if spec.secret:
                sources = ["standard input", "the prompt", *filter(None, (spec.env_var,))]
                parts.append(f"{spec.label} from {', '.join(sources)}")
            else:
                flag = f"--{spec.name.replace('_', '-')}"
                parts.append(f"{flag} ({spec.label}{', optional' if spec.optional else ''})")
        lines.append(f"  {provider.name:10} {provider.display_name:10} {'; '.join(parts)}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
