"""The provider against the xAI stand-in over real HTTP: each refused key is named as what it is."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from providers.http import RetryPolicy
from providers.types import ProviderError, Reason
from providers.xai.provider import XaiProvider
from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID, Sandbox

OTHER_TEAM = "0f6a2d8e-1b3c-4d5e-8f90-a1b2c3d4e5f6"
DELETED_TEAM = "7d3c9b1a-5e4f-4a2b-9c8d-0e1f2a3b4c5d"
CHAT_KEY = "xai-chat-0002aaaaaaaaaaaaaaaaaaaaaaaa"
NO_SCOPE_KEY = "xai-noscope-0003aaaaaaaaaaaaaaaaaaaa"
GONE_KEY = "xai-gone-0004aaaaaaaaaaaaaaaaaaaaaaaa"
REVOKED_KEY = "xai-revoked-0005aaaaaaaaaaaaaaaaaaaa"
OFFICE_KEY = "xai-office-0006aaaaaaaaaaaaaaaaaaaaa"
UNKNOWN_KEY = "xai-nobody-0007aaaaaaaaaaaaaaaaaaaaa"


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox() as running:
        running.add_key(CHAT_KEY, DEMO_TEAM_ID, kind="inference")
        running.add_key(NO_SCOPE_KEY, DEMO_TEAM_ID, billing_read=False)
        running.add_key(GONE_KEY, DELETED_TEAM)
        running.delete_team(DELETED_TEAM)
        running.add_key(REVOKED_KEY, DEMO_TEAM_ID)
        running.revoke_key(REVOKED_KEY)
        running.add_key(OFFICE_KEY, DEMO_TEAM_ID, allowed_ips=["203.0.113.0/24"])
        yield running


def check(sandbox: Sandbox, team_id: str, key: str) -> ProviderError:
    provider = XaiProvider(base_url=sandbox.url, retry=RetryPolicy(deadline=2, base_delay=0.01))

    async def run() -> None:
        async with httpx.AsyncClient() as http:
            await provider.check_credentials(http, {"team_id": team_id, "management_key": key})

    with pytest.raises(ProviderError) as caught:
        asyncio.run(run())
    return caught.value


@pytest.mark.parametrize(
    ("team_id", "key", "reason", "field", "says"),
    [
        (DEMO_TEAM_ID, CHAT_KEY, Reason.INFERENCE_KEY, "management_key",
         "requires a management key"),
        (DEMO_TEAM_ID, UNKNOWN_KEY, Reason.INVALID_KEY, "management_key",
         "invalid management key"),
        (DEMO_TEAM_ID, REVOKED_KEY, Reason.INVALID_KEY, "management_key", "has been revoked"),
        (DEMO_TEAM_ID, OFFICE_KEY, Reason.IP_NOT_ALLOWED, "management_key",
         "not in the key's allowed IP ranges"),
        (DEMO_TEAM_ID, NO_SCOPE_KEY, Reason.MISSING_SCOPE, "management_key",
         "missing permission: billing read"),
        (OTHER_TEAM, DEMO_KEY, Reason.TEAM_MISMATCH, "team_id", f"not {OTHER_TEAM}"),
        (DELETED_TEAM, GONE_KEY, Reason.TEAM_NOT_FOUND, "team_id", "team not found"),
    ],
)  # fmt: skip
def test_each_refused_connection_is_told_what_to_fix(sandbox, team_id, key, reason, field, says):
    error = check(sandbox, team_id, key)

    assert (error.reason, error.field) == (reason, field)
    assert says in error.message
    assert error.needs_person
    assert key not in error.message
