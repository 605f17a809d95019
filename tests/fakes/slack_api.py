"""A local stand-in for Slack's Web API and response URLs, served over real HTTP.

The app talks to it through the real client,
``slack_sdk.WebClient(token=..., base_url=stand_in.api_url)``, so what is tested
is what goes over the wire: form or JSON bodies, Bearer or Basic auth, HTTP 429
with ``Retry-After``. Every call is recorded (:attr:`SlackStandIn.calls`), and
every message, view and response-URL payload is checked against Block Kit's
limits; a broken limit lands in :attr:`SlackStandIn.violations`, which tests
assert stays empty, and is answered the way Slack answers it.

It holds just enough workspace state to answer like Slack (users, channels,
tokens, the OAuth app), not the messages and views it was sent: ``chat.update``
and ``views.update`` accept a ts or view id the test made up, since an
interaction payload built by a test names messages the stand-in never saw.

Standard library only; the HTTP plumbing (threads, keep-alive HTTP/1.1 with
exact Content-Length) is :mod:`providers.standin`, shared with the xAI sandbox.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from typing import Any, Self
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from providers.standin import StandIn

__all__ = ["DEFAULT_BOT_SCOPES", "Call", "Response", "SlackStandIn", "UploadedFile"]

log = logging.getLogger(__name__)

DEFAULT_BOT_SCOPES = (
    "commands,chat:write,users:read,channels:history,groups:history,"
    "channels:read,channels:join,groups:read,im:write,files:write,im:history"
)
SOCKET_MODE_URL = "ws://127.0.0.1:1/"
"""Where ``apps.connections.open`` points: nothing listens there, so a dial fails fast."""

_WAIT_POLL_SECONDS = 0.005
_JSON_PARAMS = ("blocks", "view", "attachments", "metadata")
_RESPONSE_URL_USES = 5
"""Slack lets an app post to one response URL five times..."""
_RESPONSE_URL_LIFETIME = 30 * 60
"""...within thirty minutes of issuing it."""
_DEFAULT_EXPIRES_IN = 43200
"""Slack's rotated tokens live twelve hours."""

# --- Block Kit limits (docs.slack.dev/reference/block-kit) ---------------------

MESSAGE_BLOCK_TYPES = frozenset(
    {
        "actions",
        "context",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "table",
        "data_visualization",
        "video",
    }
)
VIEW_BLOCK_TYPES = MESSAGE_BLOCK_TYPES - {"file", "table", "data_visualization"}
HOME_BLOCK_TYPES = VIEW_BLOCK_TYPES | {"data_visualization"}
"""A Home tab takes a chart here: the readable part of Slack's chart page names no
surfaces, so the app tries one there and falls back when refused (``refuse_blocks``)."""
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_MESSAGE_TEXT = 40_000
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_MARKDOWN_TEXT = 12_000
MAX_LABEL_TEXT = 2000
MAX_ID = 255
MAX_VIEW_TITLE = 24
MAX_PRIVATE_METADATA = 3000
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_URL = 3000
MAX_PLACEHOLDER = 150
MAX_OPTION_TEXT = 75
MAX_CONFIRM_TITLE = 100
MAX_CONFIRM_TEXT = 300
MAX_CONFIRM_BUTTON = 30
MAX_OPTION_VALUE = 150
MAX_OPTIONS = {"checkboxes": 10, "radio_buttons": 10, "overflow": 5}
MAX_SELECT_OPTIONS = 100
# The table block (docs.slack.dev/reference/block-kit/blocks/table-block).
MAX_TABLE_ROWS = 100  # "Maximum 100 rows"
MAX_TABLE_CELLS = 20  # "Each row object is an array with a max of 20 table cells"
MAX_COLUMN_SETTINGS = 20  # "Maximum 20 items"
TABLE_ALIGNS = frozenset({"left", "center", "right"})  # "Can be left, center, or right"
TABLE_CELL_TYPES = frozenset({"raw_text", "rich_text"})  # "raw_text or rich_text"
MAX_TABLES = 1  # not on the page: one table a message, as other Slack clients found
MAX_TABLE_CELL_TEXT = 2000  # not on the page; only warned about
# The data visualization block (docs.slack.dev/reference/block-kit/blocks/data-visualization-block).
MAX_CHART_TITLE = 50  # "Maximum 50 characters"
CHART_TYPES = frozenset({"pie", "bar", "area", "line"})
MAX_SEGMENTS = 6  # pie: "Min 1, max 6"
MAX_SERIES = 6  # bar, area, line: "Min 1, max 6"
MAX_POINTS = 20  # per series, one per category (as slack-go and slack-messaging validate it)
MAX_CHART_LABEL = 20  # segment labels, series names, categories (likewise)
MAX_AXIS_TITLE = 50  # x_label, y_label (likewise)
MAX_CHARTS = 2  # not documented: a third chart in a message is refused (vercel/chat #696)
MAX_VIEW_JSON = 250_000
"""Bytes of a view's JSON that ``views.publish`` takes (Slack: "up to 250kb")."""
SECRET_BLOCK_ID_MARKERS = ("key", "secret")
"""An input whose block_id says it holds a secret must never be pre-filled with one."""


@dataclass(frozen=True)
class Call:
    """One Web API call as the stand-in saw it (the token is kept out of ``params``)."""

    method: str
    params: dict[str, Any]
    token: str | None
    at: float
    """``time.monotonic()`` when the request arrived."""


@dataclass(frozen=True)
class Response:
    """One JSON payload posted to a response URL."""

    url_id: str
    payload: dict[str, Any]
    at: float
    refused: str | None = None
    """What Slack answered when it refused the payload (``invalid_blocks``); None: taken."""


@dataclass(frozen=True)
class _User:
    id: str
    team_id: str
    name: str
    is_admin: bool
    is_owner: bool
    is_restricted: bool
    is_ultra_restricted: bool
    is_bot: bool
    tz: str

    def payload(self) -> dict[str, Any]:
        offset, label = _zone_offset(self.tz)
        return {
            "id": self.id,
            "team_id": self.team_id,
            "name": self.name,
            "real_name": self.name,
            "tz": self.tz,
            "tz_label": label,
            "tz_offset": offset,
            "is_admin": self.is_admin,
            "is_owner": self.is_owner,
            "is_restricted": self.is_restricted,
            "is_ultra_restricted": self.is_ultra_restricted,
            "is_bot": self.is_bot,
            "deleted": False,
            "profile": {"real_name": self.name, "display_name": self.name},
        }


@dataclass
class _Channel:
    id: str
    name: str
    is_member: bool
    is_archived: bool

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": True,
            "is_private": self.id.startswith("G"),
            "is_member": self.is_member,
            "is_archived": self.is_archived,
        }


@dataclass(frozen=True)
class _Token:
    token: str
    team_id: str
    bot_user_id: str
    scope: str

    @property
    def is_app_level(self) -> bool:
        return self.token.startswith("xapp-")


@dataclass
class _OAuthApp:
    client_id: str
    client_secret: str
    team_id: str
    team_name: str
    bot_token: str
    bot_user_id: str
    app_id: str
    scope: str
    installer_user_id: str
    refresh_token: str | None
    expires_in: int | None
    used_codes: set[str] = field(default_factory=set)
    refresh_tokens: set[str] = field(default_factory=set)
    rotations: int = 0


@dataclass(eq=False)
class _Fault:
    error: str
    retry_after: int | None
    """Set for a rate limit (HTTP 429), None for a plain ``ok: false``."""
    remaining: int


@dataclass
class _Answer:
    status: int
    payload: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self) -> bytes:
        return json.dumps(self.payload, separators=(",", ":")).encode()

    @property
    def outcome(self) -> str:
        return "ok" if self.payload.get("ok") else str(self.payload.get("error", self.status))


class _SlackError(Exception):
    """An ``ok: false`` answer, raised from deep inside a method."""

    def __init__(self, error: str, *, messages: list[str] | None = None, status: int = 200) -> None:
        super().__init__(error)
        self.error = error
        self.messages = messages or []
        self.status = status

    def answer(self) -> _Answer:
        payload: dict[str, Any] = {"ok": False, "error": self.error}
        if self.messages:
            payload["response_metadata"] = {"messages": self.messages}
        return _Answer(self.status, payload)


def _zone_offset(tz: str) -> tuple[int, str]:
    """Seconds east of UTC now and the zone's abbreviation, as Slack reports them."""
    try:
        now = datetime.now(UTC).astimezone(ZoneInfo(tz))
    except (ZoneInfoNotFoundError, ValueError):
        return 0, tz
    offset = now.utcoffset()
    return int(offset.total_seconds()) if offset else 0, now.tzname() or tz


# --- Block Kit checks ---------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    path: str
    message: str
    error: str | None
    """What Slack answers; None when Slack accepts it and only we object."""

    def describe(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def pointer(self) -> str:
        """Slack's ``[ERROR] ... [json-pointer:/blocks/0/text]`` form."""
        steps = self.path.replace("]", "").replace("[", ".").split(".") if self.path else []
        return f"[ERROR] {self.message} [json-pointer:/{'/'.join(steps)}]"


def _text(value: Any) -> str | None:
    """The string inside a text object, or None when it is not one."""
    if isinstance(value, Mapping) and isinstance(value.get("text"), str):
        return value["text"]
    return None


def _text_length(value: Any) -> int:
    """Every ``text`` string in a payload, as Slack counts a message's size."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        own = len(value["text"]) if isinstance(value.get("text"), str) else 0
        return own + sum(_text_length(v) for k, v in value.items() if k != "text")
    if isinstance(value, list):
        return sum(_text_length(v) for v in value)
    return 0


class _BlockKit:
    """Collects what a payload breaks; ``error`` is what Slack answers for it."""

    def __init__(self, error: str) -> None:
        self.error = error
        self.problems: list[_Problem] = []

    def reject(self, path: str, message: str, error: str | None = None) -> None:
        self.problems.append(_Problem(path, message, error or self.error))

    def warn(self, path: str, message: str) -> None:
        self.problems.append(_Problem(path, message, None))

    def limit(self, path: str, what: str, value: Any, most: int) -> None:
        if isinstance(value, str | list) and len(value) > most:
            unit = "items" if isinstance(value, list) else "characters"
            self.reject(path, f"{what} has {len(value)} {unit} (limit {most})")

    def text(
        self, path: str, what: str, value: Any, most: int, *, plain: bool = False, required: bool
    ) -> None:
        if value is None and not required:
            return
        content = _text(value)
        if content is None:
            self.reject(path, f"{what} must be a text object")
            return
        if plain and value.get("type") != "plain_text":
            self.reject(path, f"{what} must be plain_text")
        if not content:
            self.reject(path, f"{what} is empty")
        self.limit(path, what, content, most)

    # messages and views

    def message(self, payload: Mapping[str, Any]) -> None:
        blocks = self.block_list("blocks", payload.get("blocks"), MAX_MESSAGE_BLOCKS)
        self.blocks("blocks", blocks, MESSAGE_BLOCK_TYPES)
        attachments = payload.get("attachments")
        if isinstance(attachments, list):
            for i, attachment in enumerate(attachments):
                if isinstance(attachment, Mapping) and "blocks" in attachment:
                    path = f"attachments[{i}].blocks"
                    inner = self.block_list(path, attachment["blocks"], MAX_MESSAGE_BLOCKS)
                    self.blocks(path, inner, MESSAGE_BLOCK_TYPES)
        kinds = [b.get("type") for b in blocks if isinstance(b, Mapping)]
        if kinds.count("table") > MAX_TABLES:
            self.reject(
                "blocks", f"{kinds.count('table')} tables in one message (limit {MAX_TABLES})"
            )
        if kinds.count("data_visualization") > MAX_CHARTS:
            charts = kinds.count("data_visualization")
            self.reject("blocks", f"{charts} charts in one message (limit {MAX_CHARTS})")
        text = payload.get("text")
        if blocks and not (isinstance(text, str) and text.strip()):
            self.warn(
                "text",
                "a message with blocks needs a non-empty top-level text fallback "
                "(notifications and screen readers show it)",
            )
        total = _text_length(text) + _text_length(blocks) + _text_length(attachments)
        if total > MAX_MESSAGE_TEXT:
            error = "msg_too_long" if _text_length(text) > MAX_MESSAGE_TEXT else None
            self.reject("", f"the message has {total} characters of text (limit 40000)", error)

    def view(self, view: Any, kinds: tuple[str, ...]) -> None:
        if not isinstance(view, Mapping):
            self.reject("view", "view must be a JSON object")
            return
        kind = view.get("type")
        if kind not in kinds:
            self.reject("view.type", f"view type {kind!r} is not allowed here ({', '.join(kinds)})")
        blocks = self.block_list("view.blocks", view.get("blocks"), MAX_VIEW_BLOCKS)
        if kind == "modal":
            self.text(
                "view.title", "title", view.get("title"), MAX_VIEW_TITLE, plain=True, required=True
            )
            for button in ("submit", "close"):
                self.text(
                    f"view.{button}",
                    button,
                    view.get(button),
                    MAX_VIEW_TITLE,
                    plain=True,
                    required=False,
                )
            has_input = any(isinstance(b, Mapping) and b.get("type") == "input" for b in blocks)
            if has_input and view.get("submit") is None:
                self.reject("view.submit", "a modal with input blocks needs a submit button")
        self.limit(
            "view.private_metadata",
            "private_metadata",
            view.get("private_metadata"),
            MAX_PRIVATE_METADATA,
        )
        self.limit("view.callback_id", "callback_id", view.get("callback_id"), MAX_ID)
        self.limit("view.external_id", "external_id", view.get("external_id"), MAX_ID)
        allowed = HOME_BLOCK_TYPES if kind == "home" else VIEW_BLOCK_TYPES
        self.blocks("view.blocks", blocks, allowed)
        charts = sum(
            1 for b in blocks if isinstance(b, Mapping) and b.get("type") == "data_visualization"
        )
        if charts > MAX_CHARTS:
            self.reject("view.blocks", f"{charts} charts in one view (limit {MAX_CHARTS})")
        self.secrets_not_echoed(blocks)

    def secrets_not_echoed(self, blocks: list[Any]) -> None:
        for i, block in enumerate(blocks):
            if not isinstance(block, Mapping) or block.get("type") != "input":
                continue
            block_id = str(block.get("block_id", "")).lower()
            if not any(marker in block_id for marker in SECRET_BLOCK_ID_MARKERS):
                continue
            element = block.get("element")
            is_text_input = (
                isinstance(element, Mapping) and element.get("type") == "plain_text_input"
            )
            if is_text_input and "initial_value" in element:
                self.warn(
                    f"view.blocks[{i}].element.initial_value",
                    f"input {block.get('block_id')!r} echoes a secret back into the view",
                )

    # blocks

    def block_list(self, path: str, blocks: Any, most: int) -> list[Any]:
        if blocks is None:
            return []
        if isinstance(blocks, str):
            self.reject(path, "blocks are not valid JSON", "invalid_blocks_format")
            return []
        if not isinstance(blocks, list):
            self.reject(path, "blocks must be an array", "invalid_blocks_format")
            return []
        if len(blocks) > most:
            self.reject(path, f"{len(blocks)} blocks (limit {most})")
        return blocks

    def blocks(self, path: str, blocks: list[Any], allowed: frozenset[str]) -> None:
        seen: set[str] = set()
        for i, block in enumerate(blocks):
            here = f"{path}[{i}]"
            if not isinstance(block, Mapping):
                self.reject(here, "a block must be an object")
                continue
            kind = block.get("type")
            if kind not in allowed:
                self.reject(f"{here}.type", f"unknown block type {kind!r}")
                continue
            block_id = block.get("block_id")
            if block_id is not None:
                self.limit(f"{here}.block_id", "block_id", block_id, MAX_ID)
                if str(block_id) in seen:
                    self.reject(f"{here}.block_id", f"block_id {block_id!r} is used twice")
                seen.add(str(block_id))
            check = getattr(self, f"_{kind}", None)
            if check is not None:
                check(here, block)
            self.unique_action_ids(here, block)

    def unique_action_ids(self, path: str, block: Mapping[str, Any]) -> None:
        elements = list(block.get("elements") or []) if block.get("type") == "actions" else []
        elements += [block.get("accessory"), block.get("element")]
        seen: set[str] = set()
        for element in elements:
            if isinstance(element, Mapping) and "action_id" in element:
                action_id = str(element["action_id"])
                if action_id in seen:
                    self.reject(path, f"action_id {action_id!r} is used twice in one block")
                seen.add(action_id)

    def _section(self, path: str, block: Mapping[str, Any]) -> None:
        fields = block.get("fields")
        if block.get("text") is None and not fields:
            self.reject(path, "a section needs text or fields")
        self.text(
            f"{path}.text", "section text", block.get("text"), MAX_SECTION_TEXT, required=False
        )
        if fields is not None:
            if not isinstance(fields, list):
                self.reject(f"{path}.fields", "fields must be an array")
            else:
                self.limit(f"{path}.fields", "fields", fields, MAX_SECTION_FIELDS)
                for j, item in enumerate(fields):
                    self.text(f"{path}.fields[{j}]", "field", item, MAX_FIELD_TEXT, required=True)
        if block.get("accessory") is not None:
            self.element(f"{path}.accessory", block["accessory"])

    def _header(self, path: str, block: Mapping[str, Any]) -> None:
        self.text(
            f"{path}.text",
            "header text",
            block.get("text"),
            MAX_HEADER_TEXT,
            plain=True,
            required=True,
        )

    def _context(self, path: str, block: Mapping[str, Any]) -> None:
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements:
            self.reject(f"{path}.elements", "a context block needs elements")
            return
        self.limit(f"{path}.elements", "context elements", elements, MAX_CONTEXT_ELEMENTS)

    def _actions(self, path: str, block: Mapping[str, Any]) -> None:
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements:
            self.reject(f"{path}.elements", "an actions block needs elements")
            return
        self.limit(f"{path}.elements", "actions elements", elements, MAX_ACTIONS_ELEMENTS)
        for j, element in enumerate(elements):
            self.element(f"{path}.elements[{j}]", element)

    def _input(self, path: str, block: Mapping[str, Any]) -> None:
        self.text(
            f"{path}.label", "label", block.get("label"), MAX_LABEL_TEXT, plain=True, required=True
        )
        self.text(
            f"{path}.hint", "hint", block.get("hint"), MAX_LABEL_TEXT, plain=True, required=False
        )
        if block.get("element") is None:
            self.reject(f"{path}.element", "an input block needs an element")
        else:
            self.element(f"{path}.element", block["element"])

    def _image(self, path: str, block: Mapping[str, Any]) -> None:
        if block.get("image_url") is None and block.get("slack_file") is None:
            self.reject(path, "an image block needs image_url or slack_file")
        self.limit(f"{path}.image_url", "image_url", block.get("image_url"), MAX_URL)
        self.limit(f"{path}.alt_text", "alt_text", block.get("alt_text"), MAX_LABEL_TEXT)

    def _markdown(self, path: str, block: Mapping[str, Any]) -> None:
        self.limit(f"{path}.text", "markdown text", block.get("text"), MAX_MARKDOWN_TEXT)

    def only_keys(self, path: str, block: Mapping[str, Any], keys: set[str]) -> None:
        for key in sorted(set(block) - keys):
            self.reject(f"{path}.{key}", f"unknown field {key!r}")

    def _table(self, path: str, block: Mapping[str, Any]) -> None:
        self.only_keys(path, block, {"type", "block_id", "rows", "column_settings"})
        rows = block.get("rows")
        if not isinstance(rows, list) or not rows:
            self.reject(f"{path}.rows", "a table needs rows")
            return
        self.limit(f"{path}.rows", "rows", rows, MAX_TABLE_ROWS)
        widths = set()
        for r, row in enumerate(rows):
            here = f"{path}.rows[{r}]"
            if not isinstance(row, list) or not row:
                self.reject(here, "a row must be a non-empty array of cells")
                continue
            widths.add(len(row))
            self.limit(here, "cells", row, MAX_TABLE_CELLS)
            for c, cell in enumerate(row):
                self.cell(f"{here}[{c}]", cell)
        if len(widths) > 1:
            self.warn(f"{path}.rows", f"rows of different lengths {sorted(widths)}")
        settings = block.get("column_settings")
        if settings is None:
            return
        if not isinstance(settings, list):
            self.reject(f"{path}.column_settings", "column_settings must be an array")
            return
        self.limit(f"{path}.column_settings", "column_settings", settings, MAX_COLUMN_SETTINGS)
        for c, setting in enumerate(settings):
            here = f"{path}.column_settings[{c}]"
            if setting is None:
                continue
            if not isinstance(setting, Mapping):
                self.reject(here, "a column setting must be an object")
                continue
            self.only_keys(here, setting, {"align", "is_wrapped"})
            if "align" in setting and setting["align"] not in TABLE_ALIGNS:
                self.reject(
                    f"{here}.align",
                    f"align {setting['align']!r} is not one of {sorted(TABLE_ALIGNS)}",
                )
            if "is_wrapped" in setting and not isinstance(setting["is_wrapped"], bool):
                self.reject(f"{here}.is_wrapped", "is_wrapped must be a boolean")

    def cell(self, path: str, cell: Any) -> None:
        if not isinstance(cell, Mapping) or cell.get("type") not in TABLE_CELL_TYPES:
            self.reject(path, f"a table cell is one of {sorted(TABLE_CELL_TYPES)}")
            return
        if cell["type"] == "raw_text":
            self.only_keys(path, cell, {"type", "text"})
            text = cell.get("text")
            if not isinstance(text, str) or not text:
                self.reject(f"{path}.text", "a raw_text cell needs text")
            elif len(text) > MAX_TABLE_CELL_TEXT:
                self.warn(f"{path}.text", f"a cell of {len(text)} characters")
            return
        elements = cell.get("elements")
        if not isinstance(elements, list) or not elements:
            self.reject(f"{path}.elements", "a rich_text cell needs elements")
            return
        for e, element in enumerate(elements):
            inner = element.get("elements") if isinstance(element, Mapping) else None
            if not isinstance(inner, list) or not all(
                isinstance(i, Mapping) and isinstance(i.get("type"), str) for i in inner
            ):
                self.reject(f"{path}.elements[{e}]", "a rich text element needs typed elements")

    def _data_visualization(self, path: str, block: Mapping[str, Any]) -> None:
        self.only_keys(path, block, {"type", "block_id", "title", "chart"})
        title = block.get("title")
        if not isinstance(title, str) or not title:
            self.reject(f"{path}.title", "a chart needs a title")
        else:
            self.limit(f"{path}.title", "title", title, MAX_CHART_TITLE)
        chart = block.get("chart")
        if not isinstance(chart, Mapping) or chart.get("type") not in CHART_TYPES:
            self.reject(f"{path}.chart", f"chart.type is one of {sorted(CHART_TYPES)}")
            return
        if chart["type"] == "pie":
            self.only_keys(f"{path}.chart", chart, {"type", "segments"})
            segments = chart.get("segments")
            if not isinstance(segments, list) or not segments:
                self.reject(f"{path}.chart.segments", "a pie needs segments")
                return
            self.limit(f"{path}.chart.segments", "segments", segments, MAX_SEGMENTS)
            for n, segment in enumerate(segments):
                here = f"{path}.chart.segments[{n}]"
                if not isinstance(segment, Mapping):
                    self.reject(here, "a segment must be an object")
                    continue
                self.only_keys(here, segment, {"label", "value"})
                self.chart_label(f"{here}.label", segment.get("label"))
                value = segment.get("value")
                if not _number(value) or value <= 0:
                    self.reject(
                        f"{here}.value", f"a segment's value must be above 0, not {value!r}"
                    )
            return
        self.only_keys(f"{path}.chart", chart, {"type", "series", "axis_config"})
        axis = chart.get("axis_config")
        if not isinstance(axis, Mapping):
            self.reject(f"{path}.chart.axis_config", f"a {chart['type']} chart needs axis_config")
            return
        self.only_keys(f"{path}.chart.axis_config", axis, {"categories", "x_label", "y_label"})
        categories = axis.get("categories")
        if not isinstance(categories, list) or not categories:
            self.reject(f"{path}.chart.axis_config.categories", "a chart needs categories")
            return
        self.limit(f"{path}.chart.axis_config.categories", "categories", categories, MAX_POINTS)
        for n, category in enumerate(categories):
            self.chart_label(f"{path}.chart.axis_config.categories[{n}]", category)
        if len(set(map(str, categories))) != len(categories):
            self.reject(f"{path}.chart.axis_config.categories", "categories repeat")
        for name in ("x_label", "y_label"):
            if name in axis:
                if not isinstance(axis[name], str):
                    self.reject(f"{path}.chart.axis_config.{name}", f"{name} must be a string")
                else:
                    self.limit(f"{path}.chart.axis_config.{name}", name, axis[name], MAX_AXIS_TITLE)
        series = chart.get("series")
        if not isinstance(series, list) or not series:
            self.reject(f"{path}.chart.series", "a chart needs series")
            return
        self.limit(f"{path}.chart.series", "series", series, MAX_SERIES)
        names = []
        for n, one in enumerate(series):
            here = f"{path}.chart.series[{n}]"
            if not isinstance(one, Mapping):
                self.reject(here, "a series must be an object")
                continue
            self.only_keys(here, one, {"name", "data"})
            self.chart_label(f"{here}.name", one.get("name"))
            names.append(one.get("name"))
            data = one.get("data")
            if not isinstance(data, list) or not data:
                self.reject(f"{here}.data", "a series needs data points")
                continue
            self.limit(f"{here}.data", "data points", data, MAX_POINTS)
            labels = [p.get("label") if isinstance(p, Mapping) else None for p in data]
            if sorted(map(str, labels)) != sorted(map(str, categories)):
                self.reject(f"{here}.data", "a series needs exactly one point per category")
            for p, point in enumerate(data):
                value = point.get("value") if isinstance(point, Mapping) else None
                if not _number(value):
                    self.reject(
                        f"{here}.data[{p}].value",
                        f"a point's value must be a number, not {value!r}",
                    )
        if len(set(map(str, names))) != len(names):
            self.reject(f"{path}.chart.series", "series names repeat")

    def chart_label(self, path: str, label: Any) -> None:
        if not isinstance(label, str) or not label:
            self.reject(path, "a chart label must be a non-empty string")
        else:
            self.limit(path, "label", label, MAX_CHART_LABEL)

    def element(self, path: str, element: Any) -> None:
        if not isinstance(element, Mapping):
            self.reject(path, "an element must be an object")
            return
        kind = element.get("type")
        self.limit(f"{path}.action_id", "action_id", element.get("action_id"), MAX_ID)
        if kind == "button":
            self.text(
                f"{path}.text",
                "button text",
                element.get("text"),
                MAX_BUTTON_TEXT,
                plain=True,
                required=True,
            )
            self.limit(f"{path}.value", "button value", element.get("value"), MAX_BUTTON_VALUE)
            self.limit(f"{path}.url", "button url", element.get("url"), MAX_URL)
        if element.get("confirm") is not None:
            self.confirm(f"{path}.confirm", element["confirm"])
        self.text(
            f"{path}.placeholder",
            "placeholder",
            element.get("placeholder"),
            MAX_PLACEHOLDER,
            plain=True,
            required=False,
        )
        self.initial_values(path, element)
        options = element.get("options")
        if isinstance(options, list):
            self.limit(
                f"{path}.options",
                "options",
                options,
                MAX_OPTIONS.get(str(kind), MAX_SELECT_OPTIONS),
            )
            self.options(f"{path}.options", options)
        groups = element.get("option_groups")
        if isinstance(groups, list):
            self.limit(f"{path}.option_groups", "option groups", groups, MAX_SELECT_OPTIONS)
            for j, group in enumerate(groups):
                inner = group.get("options") if isinstance(group, Mapping) else None
                if isinstance(inner, list):
                    self.limit(
                        f"{path}.option_groups[{j}].options", "options", inner, MAX_SELECT_OPTIONS
                    )
                    self.options(f"{path}.option_groups[{j}].options", inner)

    def confirm(self, path: str, dialog: Any) -> None:
        """A confirmation dialog on an element (docs.slack.dev/reference/block-kit/
        composition-objects/confirmation-dialog-object): every part required but the style."""
        if not isinstance(dialog, Mapping):
            self.reject(path, "a confirm must be an object")
            return
        self.text(
            f"{path}.title",
            "confirm title",
            dialog.get("title"),
            MAX_CONFIRM_TITLE,
            plain=True,
            required=True,
        )
        self.text(
            f"{path}.text", "confirm text", dialog.get("text"), MAX_CONFIRM_TEXT, required=True
        )
        for part in ("confirm", "deny"):
            self.text(
                f"{path}.{part}",
                f"confirm {part}",
                dialog.get(part),
                MAX_CONFIRM_BUTTON,
                plain=True,
                required=True,
            )
        if dialog.get("style") not in (None, "primary", "danger"):
            self.reject(f"{path}.style", f"confirm style {dialog.get('style')!r} is not one")

    def initial_values(self, path: str, element: Mapping[str, Any]) -> None:
        """What Slack refuses in a form's starting values: an ``initial_option`` that is
        not one of the options, a time not ``HH:mm``, a date not ``YYYY-MM-DD``."""
        chosen = element.get("initial_option")
        options = element.get("options")
        if chosen is not None and isinstance(options, list) and chosen not in options:
            self.reject(f"{path}.initial_option", "initial_option is not one of the options")
        formats = {"initial_time": "%H:%M", "initial_date": "%Y-%m-%d"}
        for name, pattern in formats.items():
            value = element.get(name)
            if value is None:
                continue
            try:
                datetime.strptime(str(value), pattern)
            except ValueError:
                self.reject(f"{path}.{name}", f"{name} {value!r} is not {pattern}")
            if name == "initial_time" and len(str(value)) != 5:
                self.reject(f"{path}.{name}", f"{name} {value!r} is not HH:mm")
        kind = element.get("type")
        if kind in ("conversations_select", "multi_conversations_select"):
            include = (element.get("filter") or {}).get("include")
            if include is not None and (
                not include or not set(include) <= {"im", "mpim", "private", "public"}
            ):
                self.reject(f"{path}.filter.include", "filter.include must be a non-empty subset")

    def options(self, path: str, options: list[Any]) -> None:
        for j, option in enumerate(options):
            if not isinstance(option, Mapping):
                self.reject(f"{path}[{j}]", "an option must be an object")
                continue
            self.text(
                f"{path}[{j}].text",
                "option text",
                option.get("text"),
                MAX_OPTION_TEXT,
                required=True,
            )
            self.limit(f"{path}[{j}].value", "option value", option.get("value"), MAX_OPTION_VALUE)


# --- request parsing ---------------------------------------------------------------


def _parse_params(query: str, content_type: str, raw_body: bytes) -> dict[str, Any]:
    """Query, then form or JSON body, merged as Slack merges them."""
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    media_type = content_type.partition(";")[0].strip().lower()
    if raw_body and media_type == "application/json":
        body = json.loads(raw_body)
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        params.update(body)
    elif raw_body and media_type != "multipart/form-data":
        params.update(parse_qsl(raw_body.decode("utf-8"), keep_blank_values=True))
    for name in _JSON_PARAMS:
        value = params.get(name)
        if isinstance(value, str) and value:
            with contextlib.suppress(ValueError):
                params[name] = json.loads(value)
    return params


def _bearer_token(authorization: str | None) -> str | None:
    scheme, _, credential = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip() or None


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, credential = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credential.strip(), validate=True).decode("utf-8")
    except ValueError:
        return None
    client_id, sep, client_secret = decoded.partition(":")
    return (client_id, client_secret) if sep else None


def _number(value: Any) -> bool:
    """A JSON number Slack can plot: finite, and not a boolean."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


# --- the stand-in ------------------------------------------------------------------


class SlackStandIn(StandIn):
    """Slack's Web API on 127.0.0.1: a recorder, a Block Kit linter and fault knobs."""

    _label = "Slack stand-in"
    _thread_name = "slack-stand-in"
    _log = log
    _content_type = "application/json; charset=utf-8"

    METHODS = (
        "auth.test",
        "users.info",
        "views.open",
        "views.update",
        "views.push",
        "views.publish",
        "chat.postMessage",
        "chat.postEphemeral",
        "chat.update",
        "chat.getPermalink",
        "conversations.info",
        "conversations.join",
        "conversations.history",
        "conversations.replies",
        "oauth.v2.access",
        "apps.connections.open",
        "apps.uninstall",
        "auth.revoke",
        "conversations.open",
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    )

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        team_id: str = "T0001",
        team_name: str = "Acme",
        bot_user_id: str = "UBOT",
        latency: float = 0.0,
    ) -> None:
        super().__init__(host, port)
        self.team_id = team_id
        self.team_name = team_name
        self.bot_user_id = bot_user_id
        self.latency = latency
        self.api_url = ""
        self.calls: list[Call] = []
        self.responses: list[Response] = []
        self.violations: list[str] = []
        self._outcomes: list[str] = []
        self._lock = threading.Lock()
        self._teams: dict[str, str] = {team_id: team_name}
        self._users: dict[str, _User] = {}
        self._channels: dict[str, _Channel] = {}
        self._tokens: dict[str, _Token] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._lost: dict[str, int] = {}
        """Calls whose answers are lost, per method (:meth:`lose_answers`)."""
        self._refused_blocks: set[tuple[str, str | None, str | None]] = set()
        """(block type, team id, token) refused; None matches any team or token."""
        self._response_teams: dict[str, str] = {}
        """The team each response URL was issued for."""
        self._oauth: _OAuthApp | None = None
        self._views: dict[str, str] = {}
        """View id to its current hash, for ``hash_conflict``."""
        self._response_uses: dict[str, int] = {}
        self._response_issued: dict[str, float] = {}
        """When each response URL was issued (``time.monotonic()``), for its 30 minutes."""
        self._response_broken: set[str] = set()
        self._history: dict[str, list[dict[str, Any]]] = {}
        """Messages posted in each channel, oldest first, as conversations.history shows them."""
        self._after: dict[str, Callable[[Call], None]] = {}
        self.files: dict[str, UploadedFile] = {}
        """Files by id: reserved by files.getUploadURLExternal, filled at the upload URL,
        shared (or not) by files.completeUploadExternal."""
        self._ids = itertools.count(1)
        self.add_user(bot_user_id, name="xai-usage", is_bot=True)

    # lifecycle

    def start(self) -> Self:
        super().start()
        self.api_url = f"{self.url}/api/"
        return self

    # the workspace

    def add_user(
        self,
        user_id: str,
        *,
        name: str = "",
        is_admin: bool = False,
        is_owner: bool = False,
        is_restricted: bool = False,
        is_ultra_restricted: bool = False,
        is_bot: bool = False,
        team_id: str | None = None,
        tz: str = "Europe/London",
    ) -> None:
        user = _User(
            user_id,
            team_id or self.team_id,
            name or user_id.lower(),
            is_admin,
            is_owner,
            is_restricted,
            is_ultra_restricted,
            is_bot,
            tz,
        )
        with self._lock:
            self._users[user_id] = user

    def add_channel(
        self, channel_id: str, name: str, *, is_member: bool = True, is_archived: bool = False
    ) -> None:
        with self._lock:
            self._channels[channel_id] = _Channel(
                channel_id, name.lstrip("#"), is_member, is_archived
            )

    def add_token(
        self,
        token: str,
        *,
        team_id: str | None = None,
        bot_user_id: str | None = None,
        scope: str = DEFAULT_BOT_SCOPES,
    ) -> None:
        """Make ``token`` valid; an ``xapp-`` token is app-level (Socket Mode only)."""
        if not token:
            raise ValueError("a token cannot be empty")
        team = team_id or self.team_id
        with self._lock:
            self._teams.setdefault(team, team)
            self._tokens[token] = _Token(token, team, bot_user_id or self.bot_user_id, scope)

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    # faults

    def rate_limit(self, method: str, *, times: int = 1, retry_after: int = 1) -> None:
        """The next ``times`` calls to ``method`` answer HTTP 429 with ``Retry-After``."""
        self._add_fault(method, _Fault("ratelimited", retry_after, times))

    def fail(self, method: str, error: str, *, times: int = 1) -> None:
        """The next ``times`` calls to ``method`` answer ``{"ok": false, "error": error}``."""
        self._add_fault(method, _Fault(error, None, times))

    def lose_answers(self, method: str, *, times: int = 1) -> None:
        """The next ``times`` calls to ``method`` are done (a post is kept) and then the
        connection is dropped before the answer: the caller cannot tell it landed."""
        if method not in self.METHODS or times < 1:
            raise ValueError(f"cannot lose {times} answers of {method!r}")
        with self._lock:
            self._lost[method] = self._lost.get(method, 0) + times

    def refuse_blocks(
        self, block_type: str, *, team_id: str | None = None, token: str | None = None
    ) -> None:
        """From now on, refuse every message or view holding a ``block_type`` block, as a
        workspace whose Slack does not take it would: ``invalid_blocks`` (a view:
        ``invalid_arguments``) naming the block. Only in ``team_id``'s workspace or for
        ``token`` when given. Not a violation: the app is expected to fall back."""
        with self._lock:
            self._refused_blocks.add((block_type, team_id, token))

    def outcomes(self, method: str) -> list[tuple[Call, str]]:
        """Each call to ``method`` with what it was answered (``ok`` or Slack's error)."""
        with self._lock:
            return [
                (c, o)
                for c, o in zip(self.calls, self._outcomes, strict=True)
                if c.method == method
            ]

    def after(self, method: str, callback: Callable[[Call], None] | None) -> None:
        """Call ``callback`` once Slack has done a ``method`` call, before it answers.

        This is how a test kills the caller between Slack taking a message and
        the caller hearing back.
        """
        with self._lock:
            if callback is None:
                self._after.pop(method, None)
            else:
                self._after[method] = callback

    def history(self, channel: str) -> list[dict[str, Any]]:
        """The messages posted in ``channel``, oldest first."""
        with self._lock:
            return list(self._history.get(channel, ()))

    def _add_fault(self, method: str, fault: _Fault) -> None:
        if method not in self.METHODS:
            raise ValueError(f"the stand-in does not serve {method!r}")
        if fault.remaining < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.setdefault(method, []).append(fault)

    # OAuth

    def set_oauth(
        self,
        *,
        client_id: str,
        client_secret: str,
        team_id: str = "T0002",
        team_name: str = "Beta",
        bot_token: str = "xoxb-beta-1",
        refresh_token: str | None = None,
        expires_in: int | None = None,
        bot_user_id: str = "UBOT2",
        app_id: str = "A0001",
        scope: str = DEFAULT_BOT_SCOPES,
        installer_user_id: str = "UINSTALLER",
    ) -> None:
        """Play slack.com's side of ``oauth.v2.access`` for one app installing into one team.

        With a ``refresh_token`` the app has token rotation on: answers carry
        ``refresh_token`` and ``expires_in`` (twelve hours unless given).
        """
        if refresh_token is not None and expires_in is None:
            expires_in = _DEFAULT_EXPIRES_IN
        app = _OAuthApp(
            client_id,
            client_secret,
            team_id,
            team_name,
            bot_token,
            bot_user_id,
            app_id,
            scope,
            installer_user_id,
            refresh_token,
            expires_in,
        )
        if refresh_token is not None:
            app.refresh_tokens.add(refresh_token)
        with self._lock:
            self._oauth = app
            self._teams[team_id] = team_name

    # response URLs

    def response_url(self, team_id: str | None = None) -> str:
        """A fresh response URL, as Slack puts in a slash command or interaction (for
        ``team_id``'s workspace, the stand-in's own by default)."""
        url_id = f"R{next(self._ids):06d}"
        with self._lock:
            self._response_issued[url_id] = time.monotonic()
            self._response_teams[url_id] = team_id or self.team_id
        return f"{self.url}/response/{url_id}"

    def age_response_urls(self, seconds: float) -> None:
        """Make every response URL issued so far ``seconds`` older."""
        with self._lock:
            for url_id in self._response_issued:
                self._response_issued[url_id] -= seconds

    def break_response_url(self, url_id: str) -> None:
        """Slack refuses this response URL from now on (``expired_url``), as it may early."""
        with self._lock:
            self._response_broken.add(url_id)

    # test helpers

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def views(self) -> dict[str, str]:
        """Every view opened, updated or published, by id, with its current hash: what a
        ``block_actions`` payload from that view carries, for ``views.update``."""
        with self._lock:
            return dict(self._views)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Poll until ``predicate()`` holds: the app answers after its ack, on another thread."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                raise AssertionError(f"not true within {timeout:g}s; {self.summary()}")
            time.sleep(_WAIT_POLL_SECONDS)

    def summary(self) -> str:
        """What the app has done so far, for a failure message."""
        with self._lock:
            calls = [
                f"{call.method}({_brief(call.params)}) -> {outcome}"
                for call, outcome in zip(self.calls, self._outcomes, strict=True)
            ]
            responses = len(self.responses)
            violations = list(self.violations)
        lines = [f"{len(calls)} call(s): " + ("; ".join(calls) or "none")]
        lines.append(f"{responses} response URL post(s)")
        if violations:
            lines.append("violations: " + "; ".join(violations))
        return ", ".join(lines)

    # request handling (called from server threads)

    def _respond(self, verb: str, target: str, headers: Message, raw_body: bytes) -> _Answer | None:
        """The answer to one request, or None to drop the connection unanswered."""
        at = time.monotonic()
        path, _, query = target.partition("?")
        if path.startswith("/api/"):
            return self._api(verb, path.removeprefix("/api/"), query, headers, raw_body, at)
        if path.startswith("/response/") and verb == "POST":
            return self._response_post(path.removeprefix("/response/"), raw_body, at)
        if path.startswith("/upload/") and verb == "POST":
            return self._upload(path.removeprefix("/upload/"), raw_body)
        return _Answer(404, {"ok": False, "error": "not_found"})

    def _unreadable(self, problem: str) -> _Answer:
        return _Answer(400, {"ok": False, "error": "invalid_request"})

    def _failed(self, verb: str, target: str) -> _Answer:
        log.exception("Slack stand-in failed to answer %s %s", verb, target)
        return _Answer(500, {"ok": False, "error": "internal_error"})

    def _api(
        self,
        verb: str,
        method: str,
        query: str,
        headers: Message,
        raw_body: bytes,
        at: float,
    ) -> _Answer | None:
        authorization = headers.get("Authorization")
        try:
            params = _parse_params(query, headers.get("Content-Type", ""), raw_body)
        except (ValueError, UnicodeDecodeError):
            params, answer = {}, _SlackError("invalid_json").answer()
        else:
            answer = None
        token = _bearer_token(authorization) or params.pop("token", None)
        if self.latency > 0 and self._stopping.wait(self.latency):
            return None
        if answer is None:
            answer = self._dispatch(verb, method, params, token, authorization)
        call = Call(method, params, token, at)
        with self._lock:
            self.calls.append(call)
            lost = self._lost.get(method, 0) > 0
            if lost:
                self._lost[method] -= 1
            self._outcomes.append(f"{answer.outcome}, answer lost" if lost else answer.outcome)
            after = self._after.get(method)
        if after is not None:
            after(call)
        return None if lost else answer

    def _dispatch(
        self,
        verb: str,
        method: str,
        params: dict[str, Any],
        token: str | None,
        authorization: str | None,
    ) -> _Answer:
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if method not in self.METHODS or handler is None:
            return _Answer(404, {"ok": False, "error": "unknown_method", "req_method": method})
        if verb not in ("GET", "POST"):
            return _Answer(405, {"ok": False, "error": "method_not_allowed"})
        fault = self._take_fault(method)
        if fault is not None and fault.retry_after is not None:
            retry = (("Retry-After", str(fault.retry_after)),)
            return _Answer(429, {"ok": False, "error": "ratelimited"}, retry)
        if fault is not None:
            return _SlackError(fault.error).answer()
        try:
            if method == "oauth.v2.access":
                return _Answer(200, {"ok": True, **self._oauth_v2_access(params, authorization)})
            auth = self._authenticate(method, token)
            payload = handler(params, auth)
        except _SlackError as exc:
            return exc.answer()
        scopes = (("x-oauth-scopes", auth.scope),) if not auth.is_app_level else ()
        return _Answer(200, {"ok": True, **payload}, scopes)

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(method)
            if not queue:
                return None
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining == 0:
                queue.pop(0)
            return fault

    def _authenticate(self, method: str, token: str | None) -> _Token:
        if not token:
            raise _SlackError("not_authed")
        with self._lock:
            auth = self._tokens.get(token)
        if auth is None:
            raise _SlackError("invalid_auth")
        if auth.is_app_level != (method == "apps.connections.open"):
            raise _SlackError("not_allowed_token_type")
        return auth

    def _violations(self, where: str, check: _BlockKit) -> None:
        """Record every problem; raise Slack's answer when Slack would refuse the payload."""
        if not check.problems:
            return
        with self._lock:
            self.violations.extend(f"{where}: {p.describe()}" for p in check.problems)
        refused = [p for p in check.problems if p.error is not None]
        if refused:
            raise _SlackError(
                refused[0].error or check.error, messages=[p.pointer() for p in refused]
            )

    def _check_message(
        self, where: str, params: Mapping[str, Any], team_id: str | None, token: str | None
    ) -> None:
        check = _BlockKit("invalid_blocks")
        check.message(params)
        self._violations(where, check)
        self._refuse("invalid_blocks", "blocks", params.get("blocks"), team_id, token)

    def _check_view(
        self, where: str, view: Any, kinds: tuple[str, ...], auth: _Token | None = None
    ) -> None:
        check = _BlockKit("invalid_arguments")
        check.view(view, kinds)
        self._violations(where, check)
        blocks = view.get("blocks") if isinstance(view, Mapping) else None
        team, token = (auth.team_id, auth.token) if auth else (None, None)
        self._refuse("invalid_arguments", "view/blocks", blocks, team, token)

    def _refuse(
        self, error: str, where: str, blocks: Any, team_id: str | None, token: str | None
    ) -> None:
        """Slack's answer where this workspace's Slack does not take a block type."""
        with self._lock:
            refused = set(self._refused_blocks)
        if not refused or not isinstance(blocks, list):
            return
        pointers = [
            f"[ERROR] unsupported block type {block.get('type')!r} [json-pointer:/{where}/{n}]"
            for n, block in enumerate(blocks)
            if isinstance(block, Mapping)
            and any(
                kind == block.get("type")
                and team in (None, team_id)
                and (allowed is None or allowed == token)
                for kind, team, allowed in refused
            )
        ]
        if pointers:
            raise _SlackError(error, messages=pointers)

    def _check_view_size(self, where: str, view: Any) -> None:
        check = _BlockKit("invalid_arguments")
        size = len(json.dumps(view, ensure_ascii=False).encode())
        if size > MAX_VIEW_JSON:
            check.reject("view", f"the view's JSON is {size} bytes (limit {MAX_VIEW_JSON})")
        self._violations(where, check)

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ids):06d}"

    def _channel(self, ref: Any) -> _Channel | None:
        """The channel an id or ``#name`` names; None for a DM (a user or D id)."""
        ref = str(ref or "")
        if not ref:
            raise _SlackError("channel_not_found")
        if ref[0] in "UWD" and not ref.startswith("#"):
            return None
        with self._lock:
            channel = self._channels.get(ref)
            if channel is None:
                name = ref.lstrip("#")
                channel = next((c for c in self._channels.values() if c.name == name), None)
        if channel is None:
            raise _SlackError("channel_not_found")
        return channel

    def _postable_channel(self, ref: Any) -> str:
        """The channel id a message lands in, with Slack's refusals in Slack's order."""
        channel = self._channel(ref)
        if channel is None:
            ref = str(ref)
            return ref if ref.startswith("D") else "D" + ref[1:]
        if channel.is_archived:
            raise _SlackError("is_archived")
        if not channel.is_member:
            raise _SlackError("not_in_channel")
        return channel.id

    # methods: each takes the params and the caller's token, returns the ok payload

    def _auth_test(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        with self._lock:
            team_name = self._teams.get(auth.team_id, auth.team_id)
        return {
            "url": f"https://{team_name.lower()}.slack.com/",
            "team": team_name,
            "user": "xai-usage",
            "team_id": auth.team_id,
            "user_id": auth.bot_user_id,
            "bot_id": "B" + auth.bot_user_id.removeprefix("U"),
            "is_enterprise_install": False,
        }

    def _users_info(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        with self._lock:
            user = self._users.get(str(params.get("user", "")))
        if user is None:
            raise _SlackError("user_not_found")
        return {"user": user.payload()}

    def _chat_postMessage(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        channel = self._postable_channel(params.get("channel"))
        if not any(params.get(name) for name in ("text", "blocks", "attachments")):
            raise _SlackError("no_text")
        self._check_message("chat.postMessage", params, auth.team_id, auth.token)
        ts = self._next_ts()
        message = {
            "type": "message",
            "user": auth.bot_user_id,
            "ts": ts,
            "text": params.get("text", ""),
        }
        if params.get("blocks"):
            message["blocks"] = params["blocks"]
        if params.get("thread_ts"):
            message["thread_ts"] = str(params["thread_ts"])
            if _truthy(params.get("reply_broadcast")):
                message["reply_broadcast"] = True
        metadata = params.get("metadata")
        if isinstance(metadata, dict):
            if not isinstance(metadata.get("event_type"), str) or not isinstance(
                metadata.get("event_payload"), dict
            ):
                raise _SlackError("invalid_metadata_format")
            message["metadata"] = metadata
        with self._lock:
            self._history.setdefault(channel, []).append(message)
        public = {k: v for k, v in message.items() if k != "metadata"}
        return {"channel": channel, "ts": ts, "message": public}

    def _chat_postEphemeral(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        self._postable_channel(params.get("channel"))
        if not params.get("user"):
            raise _SlackError("user_not_in_channel")
        if not any(params.get(name) for name in ("text", "blocks", "attachments")):
            raise _SlackError("no_text")
        self._check_message("chat.postEphemeral", params, auth.team_id, auth.token)
        return {"message_ts": self._next_ts()}

    def _chat_update(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        channel = self._postable_channel(params.get("channel"))
        ts = params.get("ts")
        if not ts:
            raise _SlackError("message_not_found")
        self._check_message("chat.update", params, auth.team_id, auth.token)
        text = params.get("text", "")
        with self._lock:  # a message it was sent is changed in place; a made-up ts is taken
            for message in self._history.get(channel, ()):
                if message["ts"] == ts:
                    message["text"] = text
                    message["blocks"] = params.get("blocks") or []
                    message["edited"] = {"user": auth.bot_user_id, "ts": self._next_ts()}
        return {"channel": channel, "ts": ts, "text": text, "message": {"text": text}}

    def _chat_getPermalink(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        """A permalink for a message it holds (any token may ask: no scope needed)."""
        ref, ts = str(params.get("channel") or ""), str(params.get("message_ts") or "")
        channel_id = ref if ref.startswith("D") else getattr(self._channel(ref), "id", ref)
        with self._lock:
            message = next((m for m in self._history.get(channel_id, ()) if m["ts"] == ts), None)
        if message is None:
            raise _SlackError("message_not_found")
        link = f"https://acme.slack.com/archives/{channel_id}/p{ts.replace('.', '')}"
        if message.get("thread_ts"):
            link += f"?thread_ts={message['thread_ts']}&cid={channel_id}"
        return {"channel": channel_id, "permalink": link}

    def delete_message(self, channel: str, ts: str) -> None:
        """Someone deleted a message: it is gone from the channel."""
        with self._lock:
            self._history[channel] = [m for m in self._history.get(channel, ()) if m["ts"] != ts]

    def _conversations_info(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        channel = self._channel(params.get("channel"))
        if channel is None:
            ref = str(params.get("channel"))
            if not ref.startswith("D"):
                raise _SlackError("channel_not_found")
            return {"channel": {"id": ref, "is_im": True, "is_member": True, "is_archived": False}}
        return {"channel": channel.payload()}

    def _conversations_history(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        """Newest first, after ``oldest``, in pages of ``limit`` with a cursor;
        metadata only with ``include_all_metadata``."""
        channel_id = self._readable(params.get("channel"), auth)
        with self._lock:  # a thread's replies are not in it, unless also sent to the channel
            messages = [
                m
                for m in reversed(self._history.get(channel_id, ()))
                if "thread_ts" not in m or m.get("reply_broadcast")
            ]
        return self._page(messages, params)

    def _conversations_replies(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        """A thread: its parent then its replies, oldest first, with the same scopes and
        paging as conversations.history."""
        channel_id = self._readable(params.get("channel"), auth)
        ts = str(params.get("ts") or "")
        with self._lock:
            history = self._history.get(channel_id, ())
            if not any(m["ts"] == ts for m in history):
                raise _SlackError("thread_not_found")
            messages = [m for m in history if m["ts"] == ts or m.get("thread_ts") == ts]
        return self._page(messages, params)

    def _readable(self, ref: Any, auth: _Token) -> str:
        """A conversation whose history the caller may read: its id, or Slack's refusal."""
        ref = str(ref or "")
        if ref.startswith("D"):
            if "im:history" not in auth.scope.split(","):
                raise _SlackError("missing_scope")
            return ref
        channel = self._channel(ref)
        if channel is None:
            raise _SlackError("channel_not_found")
        needed = "groups:history" if channel.id.startswith("G") else "channels:history"
        if needed not in auth.scope.split(","):
            raise _SlackError("missing_scope")
        if not channel.is_member:
            raise _SlackError("not_in_channel")
        return channel.id

    def _page(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        oldest = float(params.get("oldest") or 0)
        limit = max(1, min(int(params.get("limit") or 100), 999))
        start = int(params.get("cursor") or 0)
        messages = [m for m in messages if float(m["ts"]) > oldest]
        page = messages[start : start + limit]
        if not _truthy(params.get("include_all_metadata")):
            page = [{k: v for k, v in m.items() if k != "metadata"} for m in page]
        more = start + limit < len(messages)
        return {
            "messages": page,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _conversations_join(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        channel = self._channel(params.get("channel"))
        if channel is None:
            raise _SlackError("method_not_supported_for_channel_type")
        if channel.is_archived:
            raise _SlackError("is_archived")
        with self._lock:
            channel.is_member = True
        return {"channel": channel.payload()}

    def _views_open(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        return self._open_view("views.open", params, auth)

    def _views_push(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        return self._open_view("views.push", params, auth)

    def _open_view(self, method: str, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        if not params.get("trigger_id") or not params.get("view"):
            raise _SlackError("invalid_arguments")
        self._check_view(method, params["view"], ("modal",), auth)
        return {"view": self._stored_view(params["view"], auth, None)}

    def _views_update(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        view_id = params.get("view_id") or params.get("external_id")
        if not view_id or not params.get("view"):
            raise _SlackError("invalid_arguments")
        with self._lock:
            current = self._views.get(str(view_id))
        if params.get("hash") and current is not None and params["hash"] != current:
            raise _SlackError("hash_conflict")
        self._check_view("views.update", params["view"], ("modal", "home"), auth)
        return {"view": self._stored_view(params["view"], auth, str(view_id))}

    def _views_publish(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        if not params.get("user_id") or not params.get("view"):
            raise _SlackError("invalid_arguments")
        self._check_view_size("views.publish", params["view"])
        self._check_view("views.publish", params["view"], ("home",), auth)
        return {"view": self._stored_view(params["view"], auth, None)}

    def _stored_view(
        self, view: Mapping[str, Any], auth: _Token, view_id: str | None
    ) -> dict[str, Any]:
        number = next(self._ids)
        view_id = view_id or f"V{number:09d}"
        view_hash = f"{int(time.time())}.{number:08x}"
        with self._lock:
            self._views[view_id] = view_hash
        return {
            "id": view_id,
            "team_id": auth.team_id,
            "callback_id": "",
            "private_metadata": "",
            "external_id": "",
            **view,
            "state": {"values": {}},
            "hash": view_hash,
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": "A0001",
            "bot_id": "B" + auth.bot_user_id.removeprefix("U"),
        }

    def _apps_connections_open(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        return {"url": SOCKET_MODE_URL}

    def _apps_uninstall(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        """Uninstalling revokes every token the app holds in that team, as on Slack."""
        with self._lock:
            for token in [t for t, a in self._tokens.items() if a.team_id == auth.team_id]:
                del self._tokens[token]
        return {}

    def _auth_revoke(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        if not _truthy(params.get("test")):
            self.revoke_token(auth.token)
        return {"revoked": True}

    def _oauth_v2_access(self, params: dict[str, Any], authorization: str | None) -> dict[str, Any]:
        credentials = _basic_credentials(authorization) or (
            str(params.get("client_id", "")),
            str(params.get("client_secret", "")),
        )
        with self._lock:
            app = self._oauth
        if app is None or credentials[0] != app.client_id:
            raise _SlackError("invalid_client_id")
        if credentials[1] != app.client_secret:
            raise _SlackError("bad_client_secret")
        grant_type = params.get("grant_type") or "authorization_code"
        if grant_type == "authorization_code":
            return self._exchange_code(app, str(params.get("code") or ""))
        if grant_type == "refresh_token":
            return self._rotate(app, str(params.get("refresh_token") or ""))
        raise _SlackError("invalid_grant_type")

    def _exchange_code(self, app: _OAuthApp, code: str) -> dict[str, Any]:
        with self._lock:
            if not code or code in app.used_codes:
                raise _SlackError("invalid_code")
            app.used_codes.add(code)
        self.add_token(
            app.bot_token, team_id=app.team_id, bot_user_id=app.bot_user_id, scope=app.scope
        )
        return self._grant(app, app.bot_token, app.refresh_token)

    def _rotate(self, app: _OAuthApp, refresh_token: str) -> dict[str, Any]:
        with self._lock:
            if app.refresh_token is None or refresh_token not in app.refresh_tokens:
                raise _SlackError("invalid_refresh_token")
            app.rotations += 1
            access_token = f"{app.bot_token}-r{app.rotations}"
            new_refresh = f"{app.refresh_token}-r{app.rotations}"
            app.refresh_tokens.add(new_refresh)
        self.add_token(
            access_token, team_id=app.team_id, bot_user_id=app.bot_user_id, scope=app.scope
        )
        return self._grant(app, access_token, new_refresh)

    @staticmethod
    def _grant(app: _OAuthApp, access_token: str, refresh_token: str | None) -> dict[str, Any]:
        """The v2 answer for a bot install (no user scopes asked, so no user token)."""
        grant: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "bot",
            "scope": app.scope,
            "bot_user_id": app.bot_user_id,
            "app_id": app.app_id,
            "team": {"id": app.team_id, "name": app.team_name},
            "enterprise": None,
            "is_enterprise_install": False,
            "authed_user": {"id": app.installer_user_id},
        }
        if refresh_token is not None:
            grant["refresh_token"] = refresh_token
        if app.expires_in is not None:
            grant["expires_in"] = app.expires_in
        return grant

    # files: Slack's current upload API (what slack_sdk's files_upload_v2 calls)

    def _conversations_open(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        if "im:write" not in auth.scope.split(","):
            raise _SlackError("missing_scope")
        users = str(params.get("users", "")).split(",")
        if len(users) != 1 or not users[0]:
            raise _SlackError("users_list_not_supplied")
        with self._lock:
            if users[0] not in self._users:
                raise _SlackError("user_not_found")
        return {"channel": {"id": "D" + users[0][1:]}}

    def _files_getUploadURLExternal(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        if "files:write" not in auth.scope.split(","):
            raise _SlackError("missing_scope")
        filename = str(params.get("filename") or "")
        length = str(params.get("length") or "")
        if not filename or not length.isdigit() or int(length) < 1:
            raise _SlackError("invalid_arguments")
        file_id = f"F{next(self._ids):08d}"
        with self._lock:
            self.files[file_id] = UploadedFile(file_id, filename, int(length), auth.team_id)
        return {"upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    def _upload(self, file_id: str, raw_body: bytes) -> _Answer:
        """The upload URL takes the bytes, exactly as long as announced."""
        with self._lock:
            upload = self.files.get(file_id)
            if upload is None or upload.data is not None:
                return _Answer(404, {"ok": False, "error": "not_found"})
            if len(raw_body) != upload.length:
                self.violations.append(
                    f"upload {file_id}: {len(raw_body)} bytes sent, {upload.length} announced"
                )
                return _Answer(400, {"ok": False, "error": "invalid_length"})
            upload.data = raw_body
        return _Answer(200, {"ok": True})

    def _files_completeUploadExternal(self, params: dict[str, Any], auth: _Token) -> dict[str, Any]:
        files = params.get("files")
        if isinstance(files, str):
            try:
                files = json.loads(files)
            except ValueError:
                raise _SlackError("invalid_json") from None
        if not isinstance(files, list) or not files:
            raise _SlackError("invalid_arguments")
        channel = params.get("channel_id") or params.get("channels")
        where = self._postable_channel(channel) if channel else None
        done = []
        with self._lock:
            for item in files:
                upload = self.files.get(str(item.get("id", "")))
                if upload is None or upload.data is None or upload.team_id != auth.team_id:
                    raise _SlackError("file_not_found")
                upload.title = str(item.get("title") or upload.filename)
                if where:
                    upload.shared_in.append(where)
                    upload.comment = params.get("initial_comment")
                done.append({"id": upload.file_id, "title": upload.title, "name": upload.filename})
        return {"files": done}

    def _response_post(self, url_id: str, raw_body: bytes, at: float) -> _Answer:
        """A response URL takes JSON only, five times in 30 minutes; what it is sent must render."""
        where = f"response URL {url_id}"
        try:
            payload = json.loads(raw_body)
            if not isinstance(payload, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            with self._lock:
                self.violations.append(f"{where}: the body is not a JSON object")
            return _Answer(400, {"ok": False, "error": "invalid_payload"})
        with self._lock:
            if url_id in self._response_broken:
                return _Answer(404, {"ok": False, "error": "expired_url"})
            uses = self._response_uses[url_id] = self._response_uses.get(url_id, 0) + 1
            issued = self._response_issued.get(url_id, at)
            team = self._response_teams.get(url_id, self.team_id)
        try:
            if at - issued > _RESPONSE_URL_LIFETIME:
                with self._lock:
                    self.violations.append(
                        f"{where}: used {at - issued:.0f} s after it was issued "
                        f"(limit {_RESPONSE_URL_LIFETIME} s)"
                    )
                raise _SlackError("expired_url", status=404)
            if uses > _RESPONSE_URL_USES:
                with self._lock:
                    self.violations.append(
                        f"{where}: used {uses} times (limit {_RESPONSE_URL_USES})"
                    )
                raise _SlackError("used_url", status=404)
            if not _truthy(payload.get("delete_original")):
                self._check_message(where, payload, team, None)
        except _SlackError as exc:
            with self._lock:
                self.responses.append(Response(url_id, payload, at, refused=exc.error))
            answer = exc.answer()
            answer.status = exc.status if exc.status != 200 else 400
            return answer
        with self._lock:
            self.responses.append(Response(url_id, payload, at))
        return _Answer(200, {"ok": True})


@dataclass
class UploadedFile:
    file_id: str
    filename: str
    length: int
    team_id: str
    data: bytes | None = None
    title: str = ""
    shared_in: list[str] = field(default_factory=list)
    """Channel (or D…) ids the file was shared in; empty: only the uploader sees it."""
    comment: str | None = None


def _brief(params: Mapping[str, Any]) -> str:
    """The identifying params of a call, short enough for a failure message."""
    keys = ("channel", "user", "user_id", "view_id", "trigger_id", "grant_type")
    return ", ".join(f"{k}={params[k]}" for k in keys if k in params)
