"""Building the Bolt app: one workspace (a bot token) or many (OAuth).

Only this package imports Bolt. The app gets our Web API client (so
SLACK_API_URL reaches every call, OAuth and token rotation included) with
Slack's 429s retried after Retry-After.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from slack_bolt import App, BoltContext, BoltResponse
from slack_bolt.error import BoltError
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.config import ConfigError
from bot.runtime import REDACTOR, Runtime
from bot.slack import blocks
from bot.slack.client import web_client
from bot.slack.home import LiveHome, notice_view
from bot.slack.installations import DatabaseOAuthStateStore, EncryptedInstallationStore
from bot.slack.listeners import register_listeners
from bot.slack.replays import SeenRequests, replay_key
from bot.slack.service import SlackService, log_failed_request
from bot.slack.settings import OPTIONAL_SCOPES, SCOPES, SlackSettings
from storage.repo import workspace_for_slack_team

log = logging.getLogger(__name__)

INSTALL_PATH = "/slack/install"
ANOTHER_WORKSPACE = (
    "Sorry, this xai-usage is set up for another Slack workspace, so it shows and changes "
    "nothing here. To use it in this workspace, an admin can run one for it (its own "
    "SLACK_BOT_TOKEN), or install it for many workspaces (SLACK_CLIENT_ID)."
)
REDIRECT_PATH = "/slack/oauth_redirect"


def build_app(runtime: Runtime, settings: SlackSettings) -> tuple[App, SlackService]:
    redact_secrets(settings)
    common = dict(
        # Named, Bolt skips inspect.stack() to find a name: 50 ms of every start.
        name="xai-usage",
        # A request's ack is sent as its listener returns, and every listener only
        # checks, acks and hands its work on (answer processes, service.after_ack):
        # Bolt's other way runs the listener on a thread and polls for its ack every
        # 10 ms, which was most of every ack's time (./run bench slack: p50 12 -> 2 ms).
        # (Bolt's own pool for listeners is then unused: each runs on its request's
        # thread, one of waitress's, or one of Socket Mode's.)
        process_before_response=True,
        request_verification_enabled=settings.mode == "http",
        signing_secret=settings.signing_secret or "",
        logger=logging.getLogger("slack_bolt.xai_usage"),
    )
    forget: Callable[[str], None] | None = None
    home_team: str | None = None
    try:
        if settings.multi_workspace:
            store = EncryptedInstallationStore(runtime.db, settings.client_id)
            app = App(
                client=web_client(settings),
                oauth_settings=OAuthSettings(
                    client_id=settings.client_id,
                    client_secret=settings.client_secret,
                    # Slack shows the optional ones as optional (bot_optional in app.yaml).
                    scopes=[*SCOPES, *OPTIONAL_SCOPES],
                    installation_store=store,
                    state_store=DatabaseOAuthStateStore(runtime.db),
                    install_path=INSTALL_PATH,
                    redirect_uri_path=REDIRECT_PATH,
                ),
                **common,
            )

            def forget(team_id: str, enterprise_id: str | None = None) -> None:
                store.delete_all(enterprise_id=enterprise_id, team_id=team_id)
        else:
            app = App(client=web_client(settings, settings.bot_token), **common)
            home_team = bot_team(app.client)
    except BoltError as error:
        raise ConfigError(
            f"Slack refused the app's configuration: {error}. Check "
            "SLACK_BOT_TOKEN (a bot token of this app, xoxb-…)."
        ) from None
    except OSError as error:  # includes urllib's URLError: Slack is unreachable
        reason = getattr(error, "reason", error)
        raise ConfigError(
            f"Could not reach Slack at {settings.api_url} ({reason}). Check the network, "
            "or SLACK_API_URL if you set it."
        ) from None
    service = answering_service(runtime, settings, home_team=home_team, forget=forget)

    if home_team is not None:

        @app.middleware
        def only_home_team(
            body: dict, context: BoltContext, next: Callable[[], None]
        ) -> BoltResponse | None:
            """One workspace: its bot token's. Any other team is told so; nothing is touched."""
            if context.team_id == home_team:
                next()
                return None
            log.info(
                "refused a request from Slack team %s (this app serves %s)",
                context.team_id,
                home_team,
            )
            if "command" in body:  # the ack's body is the slash command's reply
                return BoltResponse(
                    status=200,
                    body={"response_type": "ephemeral", **blocks.notice(ANOTHER_WORKSPACE)},
                )
            if body.get("type") == "view_submission":  # the ack's body replaces the form
                view = blocks.message_view("xai-usage", ANOTHER_WORKSPACE)
                return BoltResponse(status=200, body={"response_action": "update", "view": view})
            service.after_ack(tell_another_workspace, app.client, body)
            return BoltResponse(status=200, body="")

    seen = SeenRequests(runtime.db)

    @app.middleware
    def handled_once(
        body: dict, context: BoltContext, next: Callable[[], None]
    ) -> BoltResponse | None:
        """A click or event already handled, here or by another process: 200, nothing done."""
        key = replay_key(body, context.team_id)
        if key is None or seen.first_time(key):
            next()
            return None
        log.info("ignored a repeat of %s", key.split(":", 1)[0])
        return BoltResponse(status=200, body="")

    @app.middleware
    def attach_service(context: BoltContext, next: Callable[[], None]) -> None:
        context["xai_usage"] = service
        next()

    app.error(log_failed_request)

    register_listeners(app)
    return app, service


def redact_secrets(settings: SlackSettings) -> None:
    """Slack's secrets never reach a log line, whatever logs them."""
    for secret in (
        settings.bot_token,
        settings.signing_secret,
        settings.app_token,
        settings.client_secret,
    ):
        if secret:
            REDACTOR.add(secret)


def answering_service(
    runtime: Runtime,
    settings: SlackSettings,
    *,
    home_team: str | None = None,
    forget: Callable[[str], None] | None = None,
) -> SlackService:
    """The service that answers requests, with its tokens and its watch on open Home
    tabs: in the serving process (:func:`build_app`) and in each answer process
    (bot.slack.answering)."""
    redact_secrets(settings)
    service = SlackService(runtime, settings, forget, home_team=home_team)
    service.tokens = token_resolver(runtime, settings, home_team=home_team)
    service.live_home = LiveHome(service, service.tokens)
    return service


def tell_another_workspace(client: WebClient, body: dict) -> None:
    """The polite refusal, after the ack, wherever Slack gives a way to say it: a click's
    response URL, a person's direct message to the app, their Home tab. With an org-wide
    install the bot token reaches them; with another installation Slack refuses it, and
    that is a line in the log. Bots, edits and other events are left unanswered."""
    notice = blocks.notice(ANOTHER_WORKSPACE)
    event = body.get("event") or {}
    try:
        if body.get("type") == "block_actions" and body.get("response_url"):
            WebhookClient(body["response_url"]).send(
                response_type="ephemeral", replace_original=False, **notice
            )
        elif (
            event.get("type") == "message"
            and event.get("channel_type") == "im"
            and event.get("user")
            and event.get("channel")
            and not (event.get("subtype") or event.get("bot_id"))
        ):
            client.chat_postMessage(channel=event["channel"], **notice)
        elif (
            event.get("type") == "app_home_opened"
            and event.get("tab") == "home"
            and event.get("user")
        ):
            client.views_publish(user_id=event["user"], view=notice_view(ANOTHER_WORKSPACE))
    except (SlackApiError, OSError) as error:
        reason = error.response.get("error") if isinstance(error, SlackApiError) else error
        log.info("could not tell another workspace's member why not (%s)", reason)


def bot_team(client: WebClient) -> str:
    """The Slack team the bot token belongs to (``auth.test``)."""
    try:
        answer = client.auth_test()
    except SlackApiError as error:
        raise ConfigError(
            f"Slack refused SLACK_BOT_TOKEN ({error.response.get('error', 'unknown_error')}). "
            "Set it to the Bot User OAuth Token (xoxb-…) of this app's installation."
        ) from None
    team = answer.get("team_id")
    if not isinstance(team, str) or not team:
        raise ConfigError("Slack's auth.test did not say which workspace SLACK_BOT_TOKEN is for.")
    return team


def token_resolver(
    runtime: Runtime, settings: SlackSettings, *, home_team: str | None = None
) -> Callable[[str | None], str | None]:
    """A bot token for a workspace when no request brings one (scheduled work).

    One workspace: SLACK_BOT_TOKEN, for its own team only (``auth.test`` says
    which, once), and for the terminal's workspace, which that team then
    adopts, as a request from it would. With many workspaces, a token about
    to expire is rotated first and the new one saved, exactly as Bolt does
    for incoming requests.
    """
    if not settings.multi_workspace:
        home: list[str] = []
        lock = threading.Lock()

        def bot_token_for(team_id: str | None) -> str | None:
            with lock:
                if not home:
                    team = home_team or bot_team(web_client(settings, settings.bot_token))
                    with runtime.db.transaction() as session:
                        workspace_for_slack_team(session, team, adopt_local=True)
                    home.append(team)
            if team_id is None or team_id == home[0]:
                return settings.bot_token
            log.warning(
                "not posting for Slack team %s: SLACK_BOT_TOKEN belongs to %s", team_id, home[0]
            )
            return None

        return bot_token_for
    from slack_sdk.oauth.token_rotation import TokenRotator

    store = EncryptedInstallationStore(runtime.db, settings.client_id)
    rotator = TokenRotator(
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        client=web_client(settings),
    )

    def token_for(team_id: str | None) -> str | None:
        bot = store.find_bot(enterprise_id=None, team_id=team_id)
        if bot is None:
            return None
        rotated = rotator.perform_bot_token_rotation(bot=bot, minutes_before_expiration=120)
        if rotated is not None:
            store.save_bot(rotated)
            bot = rotated
        return bot.bot_token

    return token_for
