"""Slack installations and OAuth states, kept in our database with tokens sealed.

slack_sdk's own SQLAlchemy installation store keeps bot and user tokens,
refresh tokens and webhook URLs in plain text. Here the whole installation
is sealed with the keyring that protects the providers' keys (AES-256-GCM, bound to
the row's ``uid``), and only what lookups and scheduling need stays plain:
the app, enterprise, team and installer ids, when it was installed and when
the bot token expires.

Both classes implement slack_sdk's interfaces, so Bolt's OAuth flow and its
``authorize`` use them like the stock stores.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk.oauth.installation_store import Bot, Installation, InstallationStore
from slack_sdk.oauth.state_store import OAuthStateStore
from sqlalchemy import ColumnElement, Select, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.crypto import DecryptionError
from storage.db import Database
from storage.models import SlackInstallation, SlackOAuthState, new_uid, utcnow

log = logging.getLogger(__name__)

LATEST_FIRST = (SlackInstallation.installed_at.desc(), SlackInstallation.id.desc())


class EncryptedInstallationStore(InstallationStore):
    """slack_sdk's installation store, on our database, with every token sealed.

    There is one row per installer of the app in a workspace (or org):
    saving again, on a reinstall or a token rotation, updates that row.
    """

    def __init__(self, db: Database, client_id: str) -> None:
        self.db = db
        self.client_id = client_id

    @property
    def logger(self) -> logging.Logger:
        return log

    def save(self, installation: Installation) -> None:
        # Two first saves of one installer can race (a repeated OAuth
        # callback, two app processes): the loser's insert breaks the unique
        # index, and its second attempt finds the winner's row and updates it.
        for attempt in (1, 2):
            try:
                with self.db.transaction() as session:
                    row = session.scalars(
                        select(SlackInstallation)
                        .where(*self._place(installation.enterprise_id, installation.team_id))
                        .where(SlackInstallation.user_id == installation.user_id)
                    ).first()
                    if row is None:
                        row = SlackInstallation(client_id=self.client_id, uid=new_uid())
                        session.add(row)
                    self._write(row, installation)
                return
            except IntegrityError:
                if attempt == 2:
                    raise

    def save_bot(self, bot: Bot) -> None:
        """Keep a rotated bot token in the installation it belongs to.

        Bots are not stored apart from installations; Bolt calls this after
        rotating a token it found with :meth:`find_bot`, and that token lives
        in the latest installation holding a bot token.
        """
        with self.db.transaction() as session:
            found = self._latest_with_bot(
                session, bot.enterprise_id, bot.team_id, bot.is_enterprise_install
            )
            if found is None:
                log.warning(
                    "No Slack installation for team %s (enterprise %s) holds a bot token; "
                    "the bot given to save_bot was not stored",
                    bot.team_id,
                    bot.enterprise_id,
                )
                return
            row, installation = found
            installation.bot_token = bot.bot_token
            installation.bot_id = bot.bot_id
            installation.bot_user_id = bot.bot_user_id
            installation.bot_scopes = bot.bot_scopes
            installation.bot_refresh_token = bot.bot_refresh_token
            installation.bot_token_expires_at = bot.bot_token_expires_at
            self._write(row, installation)

    def find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        """That user's installation, or without ``user_id`` the latest of the workspace.

        A user's installation carries the workspace's latest bot token, not
        the one issued when that user installed (as slack_sdk's stores do:
        an older installer's bot token may have been rotated since).
        """
        with self.db.session() as session:
            query = self._matching(enterprise_id, team_id, is_enterprise_install)
            if user_id is not None:
                query = query.where(SlackInstallation.user_id == user_id)
            row = session.scalars(query.order_by(*LATEST_FIRST).limit(1)).first()
            if row is None:
                return None
            installation = self._open(row)
            if user_id is None and installation.bot_token is not None:
                return installation
            latest = self._latest_with_bot(session, enterprise_id, team_id, is_enterprise_install)
        if latest is not None:
            bot = latest[1]
            installation.bot_token = bot.bot_token
            installation.bot_id = bot.bot_id
            installation.bot_user_id = bot.bot_user_id
            installation.bot_scopes = bot.bot_scopes
            installation.bot_refresh_token = bot.bot_refresh_token
            installation.bot_token_expires_at = bot.bot_token_expires_at
        return installation

    def find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        """The bot of the latest installation of the workspace that has one."""
        with self.db.session() as session:
            found = self._latest_with_bot(session, enterprise_id, team_id, is_enterprise_install)
        return found[1].to_bot() if found is not None else None

    def delete_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
    ) -> None:
        """Forget that user's installation, or without ``user_id`` every one of the workspace."""
        query = delete(SlackInstallation).where(*self._place(enterprise_id, team_id))
        if user_id is not None:
            query = query.where(SlackInstallation.user_id == user_id)
        with self.db.transaction() as session:
            session.execute(query)

    def delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        """Forget the workspace's bot tokens (revoked), keeping users' own tokens.

        An installation left with no token at all is of no further use and
        is deleted.
        """
        with self.db.transaction() as session:
            rows = session.scalars(
                select(SlackInstallation).where(*self._place(enterprise_id, team_id))
            )
            for row in rows:
                installation = self._open(row)
                if installation.bot_token is None and installation.bot_refresh_token is None:
                    continue
                if installation.user_token is None:
                    session.delete(row)
                    continue
                installation.bot_token = None
                installation.bot_id = None
                installation.bot_user_id = None
                installation.bot_scopes = []
                installation.bot_refresh_token = None
                installation.bot_token_expires_at = None
                self._write(row, installation)

    def delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        """Forget every installation of the workspace (the app was uninstalled)."""
        self.delete_installation(enterprise_id=enterprise_id, team_id=team_id)

    def _place(self, enterprise_id: str | None, team_id: str | None) -> list[ColumnElement[bool]]:
        """This app's rows for exactly this enterprise and team (either may be absent).

        Spelled like the unique index, so the index serves the lookup.
        """
        return [
            SlackInstallation.client_id == self.client_id,
            func.coalesce(SlackInstallation.enterprise_id, "") == (enterprise_id or ""),
            func.coalesce(SlackInstallation.team_id, "") == (team_id or ""),
        ]

    def _matching(
        self, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None
    ) -> Select[tuple[SlackInstallation]]:
        """The installations that serve a request from this workspace or org."""
        query = select(SlackInstallation)
        if not is_enterprise_install:
            return query.where(*self._place(enterprise_id, team_id))
        # An org-wide install serves every workspace in the org, so the team
        # Bolt passes (where the request came from) is no part of the match.
        return query.where(
            SlackInstallation.client_id == self.client_id,
            func.coalesce(SlackInstallation.enterprise_id, "") == (enterprise_id or ""),
            SlackInstallation.is_enterprise_install.is_(True),
        )

    def _latest_with_bot(
        self,
        session: Session,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None,
    ) -> tuple[SlackInstallation, Installation] | None:
        # Whether a row holds a bot token is sealed, so look newest first;
        # it is nearly always the first row.
        query = self._matching(enterprise_id, team_id, is_enterprise_install)
        for row in session.scalars(query.order_by(*LATEST_FIRST)):
            installation = self._open(row)
            if installation.bot_token is not None:
                return row, installation
        return None

    def _write(self, row: SlackInstallation, installation: Installation) -> None:
        keyring = self.db.keyring
        row.app_id = installation.app_id
        row.enterprise_id = installation.enterprise_id
        row.team_id = installation.team_id
        row.team_name = installation.team_name
        row.user_id = installation.user_id
        row.is_enterprise_install = bool(installation.is_enterprise_install)
        row.installed_at = datetime.fromtimestamp(installation.installed_at, UTC)
        row.bot_token_expires_at = _utc_or_none(installation.bot_token_expires_at)
        row.sealed = keyring.seal_json(installation_to_json(installation), row.sealed_aad)
        row.key_id = keyring.primary_key_id

    def _open(self, row: SlackInstallation) -> Installation:
        try:
            data = self.db.keyring.open_json(row.sealed, row.sealed_aad)
        except DecryptionError as error:
            log.error(
                "The Slack installation of team %s (enterprise %s, installer %s) cannot be "
                "decrypted (key id %s)",
                row.team_id,
                row.enterprise_id,
                row.user_id,
                error.key_id,
            )
            raise
        return installation_from_json(data)


def installation_to_json(installation: Installation) -> dict[str, Any]:
    """Everything an installation holds, as JSON values.

    ``to_dict_for_copying`` is what slack_sdk itself feeds back to
    ``Installation(**...)``; it keeps custom values apart, which must be JSON
    values themselves. Its timestamps are datetimes, which JSON cannot hold,
    so the Unix times they were made from are kept instead: they round-trip
    exactly.
    """
    data = installation.to_dict_for_copying()
    data["installed_at"] = installation.installed_at
    data["bot_token_expires_at"] = installation.bot_token_expires_at
    data["user_token_expires_at"] = installation.user_token_expires_at
    return data


def installation_from_json(data: dict[str, Any]) -> Installation:
    # Scopes are comma-joined, or None when there were none: Installation
    # takes "" for none, and would keep None as the scope list.
    data["bot_scopes"] = data.get("bot_scopes") or ""
    data["user_scopes"] = data.get("user_scopes") or ""
    return Installation(**data)


def _utc_or_none(unix_time: float | None) -> datetime | None:
    return None if unix_time is None else datetime.fromtimestamp(unix_time, UTC)


class DatabaseOAuthStateStore(OAuthStateStore):
    """OAuth ``state`` values for Slack's install flow, each usable once before it expires."""

    def __init__(
        self,
        db: Database,
        expiration_seconds: int = 600,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.expiration_seconds = expiration_seconds
        self.clock = clock

    @property
    def logger(self) -> logging.Logger:
        return log

    def issue(self, *args: Any, **kwargs: Any) -> str:
        state = secrets.token_urlsafe(24)
        now = self.clock()
        with self.db.transaction() as session:
            # Abandoned installs leave states behind: sweep them here rather
            # than on a schedule.
            session.execute(delete(SlackOAuthState).where(SlackOAuthState.expire_at <= now))
            session.add(
                SlackOAuthState(
                    state=state, expire_at=now + timedelta(seconds=self.expiration_seconds)
                )
            )
        return state

    def consume(self, state: str) -> bool:
        """True once for a state we issued that has not expired, then False.

        A single DELETE decides: of two concurrent consumes of one state,
        only one deletes the row.
        """
        with self.db.transaction() as session:
            result = session.execute(
                delete(SlackOAuthState).where(
                    SlackOAuthState.state == state, SlackOAuthState.expire_at > self.clock()
                )
            )
        return result.rowcount == 1
