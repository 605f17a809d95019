"""Slack's limits on the native ``table`` and ``data_visualization`` blocks, in one place.

Every limit the app builds those blocks to is here, named, with where it
comes from. Slack's own reference pages are the contract:

* docs.slack.dev/reference/block-kit/blocks/table-block ("the table page")
* docs.slack.dev/reference/block-kit/blocks/data-visualization-block ("the chart page")

Only the first part of each page (its fields and the chart schema) could be read
from the stored copy; the part on usage (which surfaces, how many per message)
was cut off. Where a limit comes from elsewhere, it says so: it is then what
other Slack clients found Slack enforcing, and the fallback (a refused block is
retried without it, and remembered per workspace: ``bot.slack.native``) covers
it being wrong.
"""

from __future__ import annotations

# -- the table block ------------------------------------------------------------

TABLE_ROWS = 100
"""Rows in one table, the header and total rows included (the table page: "Maximum 100
rows")."""
TABLE_CELLS = 20
"""Cells in one row (the table page: "a max of 20 table cells"), and so columns."""
TABLE_COLUMN_SETTINGS = 20
"""Items of ``column_settings`` (the table page: "Maximum 20 items")."""
TABLE_ALIGNMENTS = ("left", "center", "right")
"""A column's ``align`` (the table page: "Can be left, center, or right")."""
TABLE_CELL_TYPES = ("raw_text", "rich_text")
"""A cell's type (the table page: "raw_text or rich_text")."""
TABLE_CELL_CHARS = 2000
"""Characters in one cell: the table page, as stored, states none; this is the limit
another Slack client documents for table cells (CopilotKit's bot components). Our cells
are labels and amounts, far below it; a label is clipped in the middle to fit."""
TABLES_PER_MESSAGE = 1
"""Not on the stored page: Slack refuses a second table in one message, as other Slack
clients report it (vercel/chat #194, "Only one per message")."""
TABLE_SURFACES = frozenset({"message"})
"""Where a table may go: messages only. The stored page's usage section is cut off; this
is the surface list the Slack stand-in already kept (a Home tab or a modal refuses a
table), so the Home tab's tables stay code blocks."""

# -- the data visualization block ------------------------------------------------

CHART_TITLE_CHARS = 50
"""The block's ``title`` (the chart page: "Maximum 50 characters")."""
CHART_TYPES = ("pie", "bar", "area", "line")
"""The ``chart.type`` (the chart page: "Must be one of the following: pie, bar, area, or
line")."""
CHART_SEGMENTS = 6
"""A pie's segments (the chart page: "Min 1, max 6")."""
CHART_SERIES = 6
"""A bar, area or line chart's series (the chart page: "Min 1, max 6")."""
CHART_POINTS = 20
"""Data points in one series, one per category, so categories too: not in the part of
the chart page that could be read; slack-go's and slack-messaging's validators of the
block both give "1 to 20 points" and "exactly one point for every category"."""
CHART_LABEL_CHARS = 20
"""A segment's label, a series' name and a category (x-axis label): "at most 20
characters", as slack-go and slack-messaging validate them (not in the readable part)."""
CHART_AXIS_TITLE_CHARS = 50
"""``axis_config.x_label`` and ``y_label``: 50 characters (slack-go, slack-messaging)."""
CHARTS_PER_MESSAGE = 2
"""Not documented: Slack refuses a third chart in one message with ``invalid_blocks``, as
vercel/chat #696 found ("the undocumented max 2 charts per message")."""
CHART_SURFACES = frozenset({"message", "home"})
"""Where a chart is tried: messages, and the Home tab's trend. The readable part of the
chart page does not say which surfaces take it; a Home tab that refuses it is published
again without it, once, and the workspace is remembered (bot.slack.native)."""

# -- what Slack answers when it refuses a block -----------------------------------

REFUSALS = frozenset({"invalid_blocks", "invalid_arguments"})
"""``chat.postMessage``, ``chat.update`` and a response URL answer ``invalid_blocks``;
``views.publish`` answers ``invalid_arguments``; both with ``response_metadata.messages``
naming the block (``[ERROR] … [json-pointer:/blocks/3]``)."""
