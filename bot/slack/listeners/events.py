"""Events: uninstalling the app forgets the workspace."""

from __future__ import annotations

from slack_bolt import Ack, App, BoltContext


def register(app: App) -> None:
    app.event("app_uninstalled")(app_uninstalled)
    app.event("tokens_revoked")(tokens_revoked)


def app_uninstalled(body: dict, context: BoltContext) -> None:
    context["xai_usage"].forget_workspace(body["team_id"], body.get("enterprise_id"))


def tokens_revoked(body: dict, context: BoltContext) -> None:
    if body.get("event", {}).get("tokens", {}).get("bot"):
        context["xai_usage"].forget_workspace(body["team_id"], body.get("enterprise_id"))


__all__ = ["Ack", "app_uninstalled", "tokens_revoked"]
