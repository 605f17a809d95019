"""Who may do what: everyone in the workspace reads; admins change things."""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError


@dataclass(frozen=True)
class Person:
    user_id: str
    team_id: str
    is_admin: bool = False
    is_owner: bool = False
    is_guest: bool = False
    is_bot: bool = False
    tz: str = "UTC"


def look_up(client: WebClient, user_id: str, *, rate_limits: bool = False) -> Person | None:
    """Who ``user_id`` is, or None when Slack will not say; ``rate_limits``: a 429 is
    raised instead, for a caller that waits it out and asks again."""
    try:
        user = client.users_info(user=user_id)["user"]
    except SlackApiError as error:
        if rate_limits and error.response.get("error") == "ratelimited":
            raise
        return None
    return Person(
        user_id=user_id,
        team_id=user.get("team_id", ""),
        is_admin=bool(user.get("is_admin")),
        is_owner=bool(user.get("is_owner") or user.get("is_primary_owner")),
        is_guest=bool(user.get("is_restricted") or user.get("is_ultra_restricted")),
        is_bot=bool(user.get("is_bot")),
        tz=user.get("tz") or "UTC",
    )


def refusal_to_use(person: Person | None, team_id: str) -> str | None:
    """Why this person may not see this workspace's costs, or None if they may."""
    if person is None:
        return "Sorry, I could not look you up in this workspace, so I can't show its costs."
    if person.is_bot:
        return "Sorry, xai-usage answers people, not bots."
    if person.team_id and person.team_id != team_id:
        return (
            "Sorry, cost data is only shown to members of the workspace that connected it, "
            "and you are visiting from another one."
        )
    if person.is_guest:
        return "Sorry, guests can't see this workspace's costs. Ask a member or an admin."
    return None


def refusal_to_administer(
    person: Person | None, team_id: str, admins: frozenset[str], what: str = ""
) -> str | None:
    """Why this person may not connect, disconnect or configure, or None.

    ``what`` names what was refused (``budget set``), so the refusal says it."""
    refusal = refusal_to_use(person, team_id)
    if refusal or person is None:
        return refusal
    if person.is_admin or person.is_owner or person.user_id in admins:
        return None
    doing = f"`/xai-usage {what}`" if what else "connect, disconnect or configure connections"
    return (
        f"Sorry, only workspace admins and owners (or people listed in XAI_USAGE_ADMINS) can "
        f"{'run ' if what else ''}{doing}. Everyone can run reports and `status`."
    )
