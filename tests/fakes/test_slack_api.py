"""The Slack stand-in answers the real slack_sdk client as Slack would, and lints Block Kit."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import builtin_handlers
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from tests.fakes.slack_api import SOCKET_MODE_URL, SlackStandIn

TOKEN = "xoxb-acme-1"
APP_TOKEN = "xapp-1-acme"


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as stand_in:
        stand_in.add_token(TOKEN)
        stand_in.add_token(APP_TOKEN)
        stand_in.add_channel("C0GENERAL", "general")
        stand_in.add_channel("C0SECRET", "secret-plans", is_member=False)
        stand_in.add_channel("C0OLD", "old-news", is_archived=True)
        stand_in.add_user("U0ADA", name="ada", is_admin=True, tz="America/New_York")
        yield stand_in


@pytest.fixture
def client(slack: SlackStandIn) -> WebClient:
    return WebClient(token=TOKEN, base_url=slack.api_url)


def error_of(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(SlackApiError) as raised:
        call(*args, **kwargs)
    return raised.value.response["error"]


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def modal(*blocks: dict[str, Any], title: str = "Connect xAI", **extra: Any) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": "connect",
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Save"},
        "blocks": list(blocks),
        **extra,
    }


def text_input(block_id: str, label: str = "Management key", **element: Any) -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": block_id,
        "label": {"type": "plain_text", "text": label},
        "element": {"type": "plain_text_input", "action_id": "value", **element},
    }


# --- auth --------------------------------------------------------------------------


def test_auth_test_names_the_workspace_and_bot_for_a_valid_token(slack, client):
    answer = client.auth_test()

    assert answer["team_id"] == "T0001"
    assert answer["team"] == "Acme"
    assert answer["user_id"] == "UBOT"
    assert answer["bot_id"] == "BBOT"
    assert answer["url"] == "https://acme.slack.com/"
    assert answer.headers["x-oauth-scopes"]
    [call] = slack.calls_to("auth.test")
    assert call.token == TOKEN
    assert "token" not in call.params


def test_auth_test_refuses_an_unknown_or_revoked_token(slack):
    stranger = WebClient(token="xoxb-nobody", base_url=slack.api_url)
    assert error_of(stranger.auth_test) == "invalid_auth"

    slack.revoke_token(TOKEN)
    assert error_of(WebClient(token=TOKEN, base_url=slack.api_url).auth_test) == "invalid_auth"
    assert [c.token for c in slack.calls_to("auth.test")] == ["xoxb-nobody", TOKEN]


def test_a_token_for_another_team_answers_as_that_team(slack):
    slack.add_token("xoxb-other", team_id="T0009", bot_user_id="UBOT9")

    answer = WebClient(token="xoxb-other", base_url=slack.api_url).auth_test()

    assert (answer["team_id"], answer["user_id"]) == ("T0009", "UBOT9")


def test_app_level_tokens_only_open_socket_mode_connections(slack, client):
    app = WebClient(token=APP_TOKEN, base_url=slack.api_url)

    assert app.apps_connections_open(app_token=APP_TOKEN)["url"] == SOCKET_MODE_URL
    assert error_of(client.apps_connections_open, app_token=TOKEN) == "not_allowed_token_type"
    assert error_of(app.auth_test) == "not_allowed_token_type"
    assert len(slack.calls_to("apps.connections.open")) == 2


def test_auth_revoke_invalidates_the_token(slack, client):
    assert client.auth_revoke()["revoked"] is True

    assert error_of(client.auth_test) == "invalid_auth"


def test_unknown_methods_are_refused_and_recorded(slack, client):
    assert error_of(client.api_call, "reactions.add") == "unknown_method"
    assert [c.method for c in slack.calls] == ["reactions.add"]


# --- users and channels --------------------------------------------------------------


def test_users_info_has_slacks_shape(client):
    user = client.users_info(user="U0ADA")["user"]

    assert user["id"] == "U0ADA"
    assert user["team_id"] == "T0001"
    assert user["name"] == user["real_name"] == "ada"
    assert user["tz"] == "America/New_York"
    assert user["tz_offset"] in (-4 * 3600, -5 * 3600)
    assert user["is_admin"] is True
    assert user["is_owner"] is user["is_restricted"] is user["is_ultra_restricted"] is False
    assert user["is_bot"] is False
    assert user["deleted"] is False
    assert error_of(client.users_info, user="U0NOBODY") == "user_not_found"


@pytest.mark.parametrize(
    ("channel", "error"),
    [
        ("C0MISSING", "channel_not_found"),
        ("C0SECRET", "not_in_channel"),
        ("C0OLD", "is_archived"),
    ],
)
def test_post_message_refuses_channels_the_bot_cannot_post_in(client, channel, error):
    assert error_of(client.chat_postMessage, channel=channel, text="hi") == error


def test_post_message_to_a_channel_or_a_user_answers_ts_and_channel(slack, client):
    in_channel = client.chat_postMessage(channel="C0GENERAL", text="Spend today: $12.30")
    by_name = client.chat_postMessage(channel="#general", text="again")
    direct = client.chat_postMessage(channel="U0ADA", text="just you")

    assert in_channel["channel"] == by_name["channel"] == "C0GENERAL"
    assert direct["channel"].startswith("D")
    assert len({in_channel["ts"], by_name["ts"], direct["ts"]}) == 3
    assert [c.params["channel"] for c in slack.calls_to("chat.postMessage")] == [
        "C0GENERAL",
        "#general",
        "U0ADA",
    ]


def test_joining_a_channel_makes_it_postable(slack, client):
    assert client.conversations_info(channel="C0SECRET")["channel"]["is_member"] is False

    client.conversations_join(channel="C0SECRET")

    assert client.chat_postMessage(channel="C0SECRET", text="hello")["ok"]
    assert client.conversations_info(channel="C0SECRET")["channel"] == {
        "id": "C0SECRET",
        "name": "secret-plans",
        "is_channel": True,
        "is_private": False,
        "is_member": True,
        "is_archived": False,
    }


def test_ephemeral_messages_answer_a_message_ts(slack, client):
    answer = client.chat_postEphemeral(channel="C0GENERAL", user="U0ADA", text="only you")

    assert answer["message_ts"]
    assert slack.calls_to("chat.postEphemeral")[0].params["user"] == "U0ADA"


# --- Block Kit -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("blocks", "violation"),
    [
        ([section("row")] * 51, "51 blocks (limit 50)"),
        ([section("x" * 3001)], "blocks[0].text: section text has 3001 characters (limit 3000)"),
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
            "blocks[0].fields: fields has 11 items (limit 10)",
        ),
        ([{"type": "carousel"}], "unknown block type 'carousel'"),
        (
            [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
            "header text has 151 characters (limit 150)",
        ),
    ],
)
def test_messages_breaking_block_kit_limits_are_refused_and_listed(
    slack, client, blocks, violation
):
    assert error_of(client.chat_postMessage, channel="C0GENERAL", text="t", blocks=blocks) == (
        "invalid_blocks"
    )

    [listed] = slack.violations
    assert listed.startswith("chat.postMessage: ")
    assert violation in listed
    assert len(slack.calls_to("chat.postMessage")) == 1


def test_a_message_with_blocks_but_no_text_fallback_is_listed_but_posted(slack, client):
    with pytest.warns(UserWarning, match="text"):
        answer = client.chat_postMessage(channel="C0GENERAL", blocks=[section("Daily spend")])

    assert answer["ok"]
    assert slack.violations == [
        "chat.postMessage: text: a message with blocks needs a non-empty top-level text "
        "fallback (notifications and screen readers show it)"
    ]


def test_duplicate_action_ids_in_one_block_are_refused(slack, client):
    button = {"type": "button", "action_id": "refresh", "text": {"type": "plain_text", "text": "↻"}}
    blocks = [{"type": "actions", "elements": [button, button]}]

    assert error_of(client.chat_update, channel="C0GENERAL", ts="1.000001", text="t", blocks=blocks)
    assert "action_id 'refresh' is used twice" in slack.violations[0]


def test_a_confirmation_dialog_beyond_its_limits_is_refused(slack, client):
    def remove(confirm: dict) -> list[dict]:
        button = {
            "type": "button",
            "action_id": "remove",
            "text": {"type": "plain_text", "text": "Remove"},
            "confirm": confirm,
        }
        return [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}, "accessory": button}]

    fine = {
        "title": {"type": "plain_text", "text": "Remove digest 3?"},
        "text": {"type": "mrkdwn", "text": "<#C1>, every day: it won't be posted again."},
        "confirm": {"type": "plain_text", "text": "Remove"},
        "deny": {"type": "plain_text", "text": "Keep it"},
        "style": "danger",
    }
    assert client.chat_postMessage(channel="C0GENERAL", text="t", blocks=remove(fine))["ok"]
    long_text = {**fine, "text": {"type": "mrkdwn", "text": "x" * 301}}
    assert error_of(
        client.chat_postMessage, channel="C0GENERAL", text="t", blocks=remove(long_text)
    )
    no_deny = {k: v for k, v in fine.items() if k != "deny"}
    assert error_of(client.chat_postMessage, channel="C0GENERAL", text="t", blocks=remove(no_deny))
    assert [v.split(": ", 2)[1] for v in slack.violations] == [
        "blocks[0].accessory.confirm.text",
        "blocks[0].accessory.confirm.deny",
    ]


def test_form_encoded_blocks_are_decoded_and_checked(slack, client):
    blocks = [section("Spend by model")]
    client.api_call(
        "chat.postMessage", data={"channel": "C0GENERAL", "text": "t", "blocks": json.dumps(blocks)}
    )

    assert slack.calls_to("chat.postMessage")[0].params["blocks"] == blocks
    assert slack.violations == []


# --- faults --------------------------------------------------------------------------


def test_a_rate_limit_answers_429_with_retry_after(slack, client):
    slack.rate_limit("chat.postMessage", retry_after=7)

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C0GENERAL", text="hi")

    assert raised.value.response.status_code == 429
    assert raised.value.response["error"] == "ratelimited"
    assert raised.value.response.headers["Retry-After"] == "7"
    assert client.chat_postMessage(channel="C0GENERAL", text="hi")["ok"]


def test_the_rate_limit_retry_handler_retries_after_a_429(slack, monkeypatch):
    # The handler sleeps Retry-After plus up to a second of jitter; keep the test fast.
    monkeypatch.setattr(builtin_handlers, "random", SimpleNamespace(random=lambda: 0.0))
    client = WebClient(token=TOKEN, base_url=slack.api_url)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    slack.rate_limit("chat.postMessage", retry_after=0)

    assert client.chat_postMessage(channel="C0GENERAL", text="hi")["ok"]
    assert len(slack.calls_to("chat.postMessage")) == 2


def test_an_injected_failure_answers_the_error_then_recovers(slack, client):
    slack.fail("users.info", "fatal_error", times=2)

    assert error_of(client.users_info, user="U0ADA") == "fatal_error"
    assert error_of(client.users_info, user="U0ADA") == "fatal_error"
    assert client.users_info(user="U0ADA")["ok"]


def test_faults_for_methods_it_does_not_serve_are_refused(slack):
    with pytest.raises(ValueError, match=r"chat\.postMesage"):
        slack.fail("chat.postMesage", "fatal_error")


# --- OAuth ---------------------------------------------------------------------------


def test_the_oauth_code_exchange_answers_the_v2_shape_and_the_token_works(slack):
    slack.set_oauth(client_id="111.222", client_secret="shh")
    anonymous = WebClient(base_url=slack.api_url)

    grant = anonymous.oauth_v2_access(client_id="111.222", client_secret="shh", code="c0de")

    assert grant["access_token"] == "xoxb-beta-1"
    assert grant["token_type"] == "bot"
    assert grant["scope"]
    assert grant["bot_user_id"] == "UBOT2"
    assert grant["app_id"] == "A0001"
    assert grant["team"] == {"id": "T0002", "name": "Beta"}
    assert grant["enterprise"] is None
    assert grant["is_enterprise_install"] is False
    assert grant["authed_user"]["id"]
    assert "refresh_token" not in grant.data
    installed = WebClient(token=grant["access_token"], base_url=slack.api_url).auth_test()
    assert (installed["team_id"], installed["team"]) == ("T0002", "Beta")
    assert error_of(
        anonymous.oauth_v2_access, client_id="111.222", client_secret="shh", code="c0de"
    )


def test_the_oauth_exchange_checks_the_client_credentials(slack):
    slack.set_oauth(client_id="111.222", client_secret="shh")
    anonymous = WebClient(base_url=slack.api_url)

    wrong_secret = error_of(
        anonymous.oauth_v2_access, client_id="111.222", client_secret="nope", code="c"
    )
    wrong_id = error_of(anonymous.oauth_v2_access, client_id="9.9", client_secret="shh", code="c")
    form = anonymous.api_call(
        "oauth.v2.access", data={"client_id": "111.222", "client_secret": "shh", "code": "c"}
    )

    assert (wrong_secret, wrong_id) == ("bad_client_secret", "invalid_client_id")
    assert form["access_token"] == "xoxb-beta-1"


def test_token_rotation_issues_new_tokens_on_refresh(slack):
    slack.set_oauth(
        client_id="111.222", client_secret="shh", refresh_token="xoxe-1-beta", expires_in=3600
    )
    anonymous = WebClient(base_url=slack.api_url)
    grant = anonymous.oauth_v2_access(client_id="111.222", client_secret="shh", code="c0de")
    assert (grant["refresh_token"], grant["expires_in"]) == ("xoxe-1-beta", 3600)

    first = anonymous.oauth_v2_access(
        client_id="111.222",
        client_secret="shh",
        grant_type="refresh_token",
        refresh_token=grant["refresh_token"],
    )
    second = anonymous.oauth_v2_access(
        client_id="111.222",
        client_secret="shh",
        grant_type="refresh_token",
        refresh_token=first["refresh_token"],
    )

    assert first["access_token"] == "xoxb-beta-1-r1"
    assert second["access_token"] == "xoxb-beta-1-r2"
    assert second["refresh_token"] not in (grant["refresh_token"], first["refresh_token"])
    assert second["team"] == {"id": "T0002", "name": "Beta"}
    for token in ("xoxb-beta-1", "xoxb-beta-1-r1", "xoxb-beta-1-r2"):
        assert WebClient(token=token, base_url=slack.api_url).auth_test()["team_id"] == "T0002"
    assert [c.params.get("grant_type") for c in slack.calls_to("oauth.v2.access")] == [
        None,
        "refresh_token",
        "refresh_token",
    ]
    assert (
        error_of(
            anonymous.oauth_v2_access,
            client_id="111.222",
            client_secret="shh",
            grant_type="refresh_token",
            refresh_token="xoxe-forged",
        )
        == "invalid_refresh_token"
    )


# --- response URLs -------------------------------------------------------------------


def test_response_url_posts_are_recorded_and_checked(slack):
    url = slack.response_url()
    assert url != slack.response_url()
    assert url.startswith(f"{slack.url}/response/")

    sent = WebhookClient(url).send(
        text="Spend: $3.10", blocks=[section("*Spend:* $3.10")], response_type="ephemeral"
    )
    refused = WebhookClient(url).send(text="t", blocks=[section("x" * 3001)])

    assert sent.status_code == 200
    assert refused.status_code == 400
    assert json.loads(refused.body)["error"] == "invalid_blocks"
    url_id = url.rsplit("/", 1)[1]
    assert [r.url_id for r in slack.responses] == [url_id, url_id]
    assert slack.responses[0].payload["response_type"] == "ephemeral"
    assert slack.violations == [
        f"response URL {url_id}: blocks[0].text: section text has 3001 characters (limit 3000)"
    ]


def test_a_response_url_takes_five_posts(slack):
    webhook = WebhookClient(slack.response_url())

    statuses = [webhook.send(text=f"update {n}").status_code for n in range(6)]

    assert statuses == [200] * 5 + [404]
    assert "used 6 times (limit 5)" in slack.violations[0]


def test_a_response_url_lasts_thirty_minutes(slack):
    old = slack.response_url()
    slack.age_response_urls(29 * 60)
    assert WebhookClient(old).send(text="in time").status_code == 200
    slack.age_response_urls(2 * 60)

    late = WebhookClient(old).send(text="too late")

    assert late.status_code == 404 and json.loads(late.body)["error"] == "expired_url"
    assert "used 1860 s after it was issued (limit 1800 s)" in slack.violations[0]


def test_a_broken_response_url_is_refused_without_blame(slack):
    url = slack.response_url()
    slack.break_response_url(url.rsplit("/", 1)[1])

    refused = WebhookClient(url).send(text="hello")

    assert refused.status_code == 404 and json.loads(refused.body)["error"] == "expired_url"
    assert slack.responses == [] and slack.violations == []


# --- views ---------------------------------------------------------------------------


def test_views_open_answers_the_view_with_an_id(slack, client):
    view = modal(text_input("xai_team"), private_metadata="C0GENERAL")

    opened = client.views_open(trigger_id="123.456", view=view)["view"]

    assert opened["id"].startswith("V")
    assert opened["callback_id"] == "connect"
    assert opened["private_metadata"] == "C0GENERAL"
    assert opened["hash"]
    assert slack.calls_to("views.open")[0].params["view"] == view
    assert slack.violations == []


def test_views_open_needs_a_trigger_id(client):
    assert error_of(client.api_call, "views.open", json={"view": modal()}) == "invalid_arguments"


def test_views_breaking_limits_are_refused_and_listed(slack, client):
    bad = modal(
        {"type": "input", "block_id": "team", "element": {"type": "plain_text_input"}},
        {"type": "input", "block_id": "team", "label": {"type": "plain_text", "text": "Team"}},
        title="Connect your xAI account now",
        private_metadata="m" * 3001,
    )

    assert error_of(client.views_open, trigger_id="1.2", view=bad) == "invalid_arguments"

    listed = "\n".join(slack.violations)
    assert "view.title: title has 28 characters (limit 24)" in listed
    assert "view.blocks[0].label: label must be a text object" in listed
    assert "view.blocks[1].element: an input block needs an element" in listed
    assert "view.blocks[1].block_id: block_id 'team' is used twice" in listed
    assert "private_metadata has 3001 characters (limit 3000)" in listed


def test_a_view_that_echoes_a_secret_back_is_listed(slack, client):
    view = modal(text_input("management_key", initial_value="xai-mgmt-abc"))

    assert client.views_open(trigger_id="1.2", view=view)["ok"]
    assert slack.violations == [
        "views.open: view.blocks[0].element.initial_value: input 'management_key' "
        "echoes a secret back into the view"
    ]


def test_form_starting_values_slack_refuses_are_listed(slack, client):
    option = {"text": {"type": "plain_text", "text": "Every day"}, "value": "day"}
    other = {"text": {"type": "plain_text", "text": "Every week"}, "value": "week"}
    bad = modal(
        {
            "type": "input",
            "block_id": "every",
            "label": {"type": "plain_text", "text": "How often"},
            "element": {"type": "static_select", "options": [option], "initial_option": other},
        },
        {
            "type": "input",
            "block_id": "at",
            "label": {"type": "plain_text", "text": "Time"},
            "element": {"type": "timepicker", "initial_time": "9:00"},
        },
        {
            "type": "input",
            "block_id": "from",
            "label": {"type": "plain_text", "text": "From"},
            "element": {"type": "datepicker", "initial_date": "01/11/2026"},
        },
        {
            "type": "input",
            "block_id": "channel",
            "label": {"type": "plain_text", "text": "Channel"},
            "element": {"type": "conversations_select", "filter": {"include": []}},
        },
    )

    assert error_of(client.views_open, trigger_id="1.2", view=bad) == "invalid_arguments"

    listed = "\n".join(slack.violations)
    assert "view.blocks[0].element.initial_option: initial_option is not one of" in listed
    assert "view.blocks[1].element.initial_time: initial_time '9:00' is not HH:mm" in listed
    assert "view.blocks[2].element.initial_date: initial_date '01/11/2026' is not" in listed
    assert "view.blocks[3].element.filter.include: filter.include must be" in listed


def test_views_update_refuses_a_stale_hash(client):
    opened = client.views_open(trigger_id="1.2", view=modal(text_input("team")))["view"]
    updated = client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal())["view"]

    assert updated["id"] == opened["id"]
    assert error_of(client.views_update, view_id=opened["id"], hash=opened["hash"], view=modal())


def test_views_publish_takes_a_home_view(client):
    home = {"type": "home", "blocks": [section("This month: $412.00")]}

    assert client.views_publish(user_id="U0ADA", view=home)["view"]["type"] == "home"
    assert error_of(client.views_publish, user_id="U0ADA", view=modal()) == "invalid_arguments"


def test_views_publish_refuses_a_view_over_250_kb(slack, client):
    # 100 blocks within every text limit, yet 100 x 2,900 characters of 1-byte
    # text is under the size; 3-byte characters take it over.
    big = {"type": "home", "blocks": [section("€" * 900) for _ in range(100)]}

    assert error_of(client.views_publish, user_id="U0ADA", view=big) == "invalid_arguments"
    assert any("250000" in v for v in slack.violations)


# --- waiting, latency, the wire ------------------------------------------------------


def test_wait_for_returns_once_the_app_has_replied(slack, client):
    later = threading.Timer(
        0.05, client.chat_postMessage, kwargs={"channel": "U0ADA", "text": "hi"}
    )
    later.start()
    try:
        slack.wait_for(lambda: len(slack.calls_to("chat.postMessage")) == 1, timeout=2)
    finally:
        later.join()


def test_wait_for_times_out_with_a_summary_of_the_calls(slack, client):
    client.auth_test()

    with pytest.raises(AssertionError, match=r"1 call\(s\): auth\.test\(\) -> ok"):
        slack.wait_for(lambda: bool(slack.responses), timeout=0.05)


def test_latency_slows_api_calls():
    with SlackStandIn(latency=0.05) as slow:
        slow.add_token(TOKEN)
        started = time.monotonic()
        WebClient(token=TOKEN, base_url=slow.api_url).auth_test()
        assert time.monotonic() - started >= 0.05


def test_one_connection_carries_many_requests(slack):
    connection = http.client.HTTPConnection("127.0.0.1", int(slack.url.rsplit(":", 1)[1]))
    try:
        for _ in range(3):
            connection.request(
                "POST", "/api/auth.test", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            response = connection.getresponse()
            assert json.loads(response.read())["ok"] is True
    finally:
        connection.close()
    assert len(slack.calls_to("auth.test")) == 3


# --- native tables and charts --------------------------------------------------------


def cell(text: str) -> dict[str, Any]:
    return {"type": "raw_text", "text": text}


def table(rows: int = 3, cells: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "type": "table",
        "rows": [[cell(f"r{r}c{c}") for c in range(cells)] for r in range(rows)],
        **extra,
    }


def bars(
    categories: int = 3, series: int = 1, data: list | None = None, **chart: Any
) -> dict[str, Any]:
    labels = [f"d{n}" for n in range(categories)]
    return {
        "type": "data_visualization",
        "title": "Cost per day",
        "chart": {
            "type": "bar",
            "series": data
            or [
                {"name": f"s{s}", "data": [{"label": x, "value": 1.5} for x in labels]}
                for s in range(series)
            ],
            "axis_config": {"categories": labels, "x_label": "UTC day", "y_label": "USD"},
            **chart,
        },
    }


def pie(*values: float, label: str = "grok-4") -> dict[str, Any]:
    return {
        "type": "data_visualization",
        "title": "Share by key",
        "chart": {
            "type": "pie",
            "segments": [{"label": f"{label} {n}", "value": v} for n, v in enumerate(values)],
        },
    }


def test_tables_and_charts_within_the_limits_are_posted(slack, client):
    blocks = [
        table(rows=100, cells=20, column_settings=[{"align": "right", "is_wrapped": True}] * 20),
        bars(categories=20, series=6),
        pie(1, 2, 3, 4, 5, 6),
    ]
    assert client.chat_postMessage(channel="C0GENERAL", text="t", blocks=blocks)["ok"]
    assert slack.violations == []


@pytest.mark.parametrize(
    ("blocks", "violation"),
    [
        ([table(rows=101)], "blocks[0].rows: rows has 101 items (limit 100)"),
        ([table(cells=21)], "blocks[0].rows[0]: cells has 21 items (limit 20)"),
        ([table(), table()], "2 tables in one message (limit 1)"),
        ([table(column_settings=[{"align": "middle"}])], "align 'middle' is not one of"),
        ([table(column_settings=[{"align": "left"}] * 21)], "column_settings has 21 items"),
        ([{"type": "table", "rows": [[{"type": "raw_text", "text": ""}]]}], "needs text"),
        ([{"type": "table", "rows": [[{"type": "mrkdwn", "text": "*x*"}]]}], "a table cell is"),
        ([table(caption="x")], "unknown field 'caption'"),
        ([{**bars(), "title": "t" * 51}], "title has 51 characters (limit 50)"),
        ([bars(categories=21)], "categories has 21 items (limit 20)"),
        ([bars(series=7)], "series has 7 items (limit 6)"),
        ([pie(*[1.0] * 7)], "segments has 7 items (limit 6)"),
        ([pie(1.0, 0)], "a segment's value must be above 0"),
        ([pie(1.0, label="x" * 19)], "label has 21 characters (limit 20)"),
        ([bars(), bars(), bars()], "3 charts in one message (limit 2)"),
        (
            [bars(axis_config={"categories": ["a", "a"]})],
            "categories repeat",
        ),
        (
            [bars(data=[{"name": "s", "data": [{"label": "d0", "value": 1}]}])],
            "exactly one point per category",
        ),
        (
            [
                bars(
                    data=[
                        {"name": "s", "data": [{"label": f"d{n}", "value": "1"} for n in range(3)]}
                    ]
                )
            ],
            "a point's value must be a number",
        ),
        ([bars(type="donut")], "chart.type is one of"),
    ],
)
def test_tables_and_charts_breaking_the_documented_limits_are_refused(
    slack, client, blocks, violation
):
    assert error_of(client.chat_postMessage, channel="C0GENERAL", text="t", blocks=blocks) == (
        "invalid_blocks"
    )
    assert any(violation in listed for listed in slack.violations), slack.violations


def test_a_table_is_refused_in_a_home_tab_and_a_chart_is_tried_there(slack, client):
    home = {"type": "home", "blocks": [section("Spend"), bars()]}
    assert client.views_publish(user_id="U0ADA", view=home)["ok"]
    assert slack.violations == []
    home = {"type": "home", "blocks": [table()]}
    assert error_of(client.views_publish, user_id="U0ADA", view=home) == "invalid_arguments"
    assert "unknown block type 'table'" in slack.violations[0]


def test_a_workspace_can_be_made_to_refuse_a_block_without_blame(slack, client):
    other = WebClient(token="xoxb-beta-1", base_url=slack.api_url)
    slack.add_token("xoxb-beta-1", team_id="T0002")
    slack.refuse_blocks("table", team_id="T0001")
    slack.refuse_blocks("data_visualization", token="xoxb-beta-1")
    message = {"channel": "C0GENERAL", "text": "t", "blocks": [section("Spend"), table()]}

    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(**message)
    assert refused.value.response["error"] == "invalid_blocks"
    said = refused.value.response["response_metadata"]["messages"]
    assert said == ["[ERROR] unsupported block type 'table' [json-pointer:/blocks/1]"]
    assert other.chat_postMessage(**message)["ok"]  # another workspace takes tables
    assert client.chat_postMessage(channel="C0GENERAL", text="t", blocks=[bars()])["ok"]
    assert error_of(other.chat_postMessage, channel="C0GENERAL", text="t", blocks=[bars()]) == (
        "invalid_blocks"
    )
    home = {"type": "home", "blocks": [bars()]}
    assert error_of(other.views_publish, user_id="U0ADA", view=home) == "invalid_arguments"
    assert [o for _, o in slack.outcomes("chat.postMessage")] == [
        "invalid_blocks", "ok", "ok", "invalid_blocks"
    ]  # fmt: skip
    url = slack.response_url("T0001")
    answer = WebhookClient(url).send(text="t", blocks=[table()])
    assert answer.status_code == 400 and json.loads(answer.body)["error"] == "invalid_blocks"
    assert (
        WebhookClient(slack.response_url("T0002")).send(text="t", blocks=[table()]).status_code
        == 200
    )
    assert [r.refused for r in slack.responses] == ["invalid_blocks", None]
    assert slack.violations == []  # refusing is Slack's choice here, not the app's mistake
