"""Charts and exports in Slack: drawn after the ack, natively or sent as files.

A ``--chart`` is drawn by Slack itself where the workspace takes the
``data_visualization`` block (bot.slack.native); elsewhere, and for exports,
a file goes with Slack's current upload API.

``files_upload_v2`` asks ``files.getUploadURLExternal`` for an upload URL,
posts the bytes there and shares the file with
``files.completeUploadExternal``. A private answer stays private: the file is
shared only in the asker's direct message with the app (``conversations.open``,
scope ``im:write``), never in the channel the command was typed in; ``--share``
shares it in that channel. The text table stays in the reply, as the
fallback and for screen readers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC
from typing import TYPE_CHECKING

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.grammar import Command, UsageError
from bot.reports import Report, nothing_connected
from bot.slack import blocks
from bot.slack.service import Invocation, SlackService
from storage.repo import NotFound, find_connection

if TYPE_CHECKING:
    from bot.charts import ChartData

log = logging.getLogger(__name__)

_REFUSALS = {
    "not_in_channel": "I am not in this channel: invite me (`/invite @xai-usage`) or drop --share.",
    "channel_not_found": "I cannot post files here: invite me to the channel or drop --share.",
    "is_archived": "This channel is archived: drop --share to get the file privately.",
    "missing_scope": "The app needs the `files:write` and `im:write` scopes: an admin adds them "
    "under OAuth & Permissions and reinstalls (see the README).",
}


def where_it_goes(share: bool, what: str, *, here: bool = False) -> str:
    """Where a chart or file goes, said where it was asked: ``here`` is the app's DM."""
    if share:
        return f"The {what} is posted in this channel."
    if here:
        return f"The {what} follows here."
    return f"The {what} is on its way to your direct messages with me (only you can see it)."


def with_note(message: dict, note: str) -> dict:
    """The reply with one more context line (the table stays as it is)."""
    extra = {"type": "context", "elements": [{"type": "mrkdwn", "text": note}]}
    return {**message, "blocks": [*message.get("blocks", []), extra]}


def send_file(
    client: WebClient,
    invocation: Invocation,
    data: bytes,
    *,
    filename: str,
    title: str,
    share: bool,
    comment: str | None = None,
    alt: str | None = None,
) -> str:
    """Upload and share: in the channel with ``share``, else in the asker's DM. The file id."""
    if share:
        channel = invocation.channel_id
    else:
        channel = client.conversations_open(users=invocation.user_id)["channel"]["id"]
    return upload_file(
        client, channel, data, filename=filename, title=title, comment=comment, alt=alt
    )


def upload_file(
    client: WebClient,
    channel: str,
    data: bytes,
    *,
    filename: str,
    title: str,
    comment: str | None = None,
    alt: str | None = None,
) -> str:
    """Upload and share in ``channel`` with Slack's current upload API; the file id."""
    response = client.files_upload_v2(
        content=data,
        filename=filename,
        title=title,
        channel=channel,
        initial_comment=comment,
        alt_txt=alt,
    )
    return response["file"]["id"]


def refusal(error: SlackApiError) -> str:
    code = error.response.get("error", "") if error.response is not None else ""
    return _REFUSALS.get(code, f"Slack refused the file ({code or 'no reason given'}).")


def answer_with_chart(
    service: SlackService,
    client: WebClient,
    invocation: Invocation,
    command: Command,
    report: Report,
    respond: Callable[..., object],
    placement: dict[str, object],
    *,
    in_dm: bool = False,
) -> str | None:
    """``--chart``: the report with its chart drawn by Slack (a ``data_visualization``
    block under the table), from the same data the picture is drawn from; a Chart click
    (the report on screen already) answers with the chart alone. Where this workspace's
    Slack refuses the block (known, or now), the picture is sent instead: to the asker's
    DM, or the channel with ``--share``, and the answer says where. ``in_dm``: asked in
    the app's own DM, where it follows. The picture's file id, or None when Slack drew
    the chart."""
    from bot.charts import chart_data
    from bot.slack.native import CHART, chart_block, chart_message, chart_note
    from bot.slack.refusals import MESSAGE, NothingLeft, refusals_for

    shared = bool(command.get("share")) and not in_dm
    refusals = refusals_for(service.runtime.db)
    workspace_id = service.workspace_id(invocation)
    with service.runtime.db.session() as session:
        label = command.get("connection")
        connection_id = find_connection(session, workspace_id, label).id if label else None
        data = chart_data(session, workspace_id, report, connection_id=connection_id)
    where = where_it_goes(shared, "chart", here=in_dm)
    drawn = CHART not in refusals.refused(invocation.team_id, MESSAGE)
    if invocation.only_chart:  # the report is on screen already: the chart alone
        alone = chart_message(data) if drawn else None
        if alone is not None:
            try:
                respond(**alone, **placement)
                return None  # Slack drew it
            except NothingLeft:  # refused now, and a bare title says nothing
                pass
        respond(**blocks.notice(where), **placement)
        return send_chart(client, invocation, command, report, respond, data, here=in_dm)
    block = chart_block(data) if drawn else None
    drawn = block is not None
    message = blocks.report_message(
        report,
        command,
        shared_by=invocation.user_id if shared else None,
        chart=block,
        chart_note=chart_note(data),
        in_dm=in_dm,
    )
    if not drawn:  # the picture, as before
        message = with_note(message, where)
    respond(**message, **placement)
    if drawn:
        if CHART not in refusals.refused(invocation.team_id, MESSAGE):
            return None  # Slack drew it
        respond(**blocks.notice(where), **placement)  # refused now
    return send_chart(client, invocation, command, report, respond, data, here=in_dm)


def send_chart(
    client: WebClient,
    invocation: Invocation,
    command: Command,
    report: Report,
    respond: Callable[..., object],
    data: ChartData,
    *,
    here: bool = False,
) -> str | None:
    """Send ``data`` (the chart of ``report``) as a picture; a failure is one line in the
    reply."""
    from bot.charts import render_chart

    png = render_chart(data, "png")
    name = f"xai-usage-{report.period.start}-to-{report.period.end}-by-{report.group_by}.png"
    share = bool(command.get("share")) and not here
    try:
        return send_file(
            client,
            invocation,
            png,
            filename=name,
            title=data.title,
            share=share,
            comment=None if share else f"Your chart: {data.title}",
            alt=f"{data.title}. {data.subtitle}.",
        )
    except SlackApiError as error:
        log.warning("chart upload refused: %s", error.response.get("error"))
        respond(**blocks.notice(refusal(error)))
        return None


def send_export(
    service: SlackService,
    client: WebClient,
    invocation: Invocation,
    command: Command,
    respond: Callable[..., object],
) -> str | None:
    """``/xai-usage export …``: the file to the asker's DM, or the channel with ``--share``."""
    from bot.exports import export_file

    workspace_id = service.workspace_id(invocation)
    now = service.runtime.clock().astimezone(UTC)
    try:
        with service.runtime.db.session() as session:
            made = export_file(session, workspace_id, invocation.team_name, command, now)
    except UsageError as error:
        respond(**blocks.notice(error.message, error.usage))
        return None
    except NotFound as error:
        respond(**blocks.notice(str(error)))
        return None
    if made.empty:  # a file of nothing: say what to do first instead
        respond(**blocks.notice(nothing_connected("/xai-usage", in_slack=True)))
        return None
    here = service.in_own_dm(client, invocation)  # the app's DM: the file comes right here
    share = bool(command.get("share")) and not here
    try:
        file_id = send_file(
            client,
            invocation,
            made.data,
            filename=made.filename,
            title=made.title,
            share=share,
            comment=None if share else f"Your export: {made.title}",
        )
    except SlackApiError as error:
        respond(**blocks.notice(refusal(error)))
        return None
    where = (
        "posted in this channel" if share else "here" if here else "in your direct messages with me"
    )
    respond(
        **blocks.notice(f"{made.title} ({made.filename}): {where}."),
        response_type="in_channel" if share else "ephemeral",
    )
    return file_id
