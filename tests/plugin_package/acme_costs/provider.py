"""Acme AI: a key and an optional region; costs per day and model from ``GET /costs``.

It uses what the contract offers a provider and nothing of the host's: an optional
field, its own refusal code (``token_expired``, needing a person), the account the
token reads, a 30-day reach, a settling time, a caveat, where its tokens are made,
and a local stand-in (``StandInProvider``).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import httpx

from providers.types import (
    CheckResult,
    CostFetch,
    CostRow,
    CredentialField,
    ProviderError,
    Reason,
)

BASE_URL_SETTING = "ACME_API_URL"
TOKEN_PAGE = "acme.example > Settings > Tokens"


def _check_region(value: str) -> str | None:
    return None if value in ("us", "eu") else "The region is us or eu (leave it empty for us)."


def _check_token(value: str) -> str | None:
    if not value.startswith("acme-"):
        return f"That is not an Acme token: tokens start with acme-. Make one in {TOKEN_PAGE}."
    return None


class AcmeProvider:
    name = "acme"
    display_name = "Acme AI"
    credential_fields = (
        CredentialField(
            "region",
            "Region",
            help="Where your Acme account lives: us or eu. Left empty: us.",
            placeholder="us",
            validate=_check_region,
            optional=True,
        ),
        CredentialField(
            "api_token",
            "API token",
            secret=True,
            help=f"A read-only token from {TOKEN_PAGE}.",
            placeholder="acme-…",
            env_var="ACME_API_TOKEN",
            validate=_check_token,
        ),
    )
    max_window_days = 10
    max_backfill_days = 30
    settle_hours = 2
    caveats = ("Acme's costs leave out fine-tuning jobs, billed apart.",)
    key_page = TOKEN_PAGE
    no_spend_hint = "the token may be for another Acme account: check its owner."
    stand_in_setting = BASE_URL_SETTING

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def mask(self, credentials) -> str:
        return "acme-…" + str(credentials.get("api_token", ""))[-4:]

    def default_label(self, credentials) -> str:
        return "Acme"

    async def check_credentials(self, http: httpx.AsyncClient, credentials) -> CheckResult:
        who = await self._get(http, credentials, "/whoami", {})
        return CheckResult(account_id=who["account"], account_name=who["name"])

    async def fetch_daily_costs(self, http, credentials, start: date, end: date, *, by_key=True):
        found = await self._get(
            http, credentials, "/costs", {"from": start.isoformat(), "to": end.isoformat()}
        )
        rows = tuple(
            CostRow(date.fromisoformat(r["day"]), r["model"], Decimal(r["usd"]))
            for r in found["costs"]
        )
        return CostFetch(rows=rows, by_key=False)

    async def fetch_billing(self, http, credentials) -> None:
        return None

    def stand_in(self, *, host: str, port: int, latency: float = 0.0):
        from acme_costs.sandbox import AcmeStandIn

        return AcmeStandIn(host=host, port=port)

    async def _get(self, http, credentials, path: str, query: dict) -> dict:
        region = credentials.get("region") or "us"
        headers = {"Authorization": f"Bearer {credentials['api_token']}", "Acme-Region": region}
        try:
            response = await http.get(self.base_url + path, params=query, headers=headers)
        except httpx.RequestError:
            raise ProviderError(
                Reason.UNREACHABLE, f"Could not reach Acme at {self.base_url}."
            ) from None
        if response.status_code == 401:
            raise ProviderError(
                "token_expired",
                f"Acme says this token has expired. Make a new one in {TOKEN_PAGE}.",
                field="api_token",
                needs_person=True,
            )
        if response.status_code == 404:
            raise ProviderError(
                "wrong_region",
                "Acme has no such account in this region: try the other one.",
                field="region",
                needs_person=True,
            )
        if not response.is_success:
            raise ProviderError(Reason.SERVER_ERROR, f"Acme answered HTTP {response.status_code}.")
        return response.json()
