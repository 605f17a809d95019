"""How setup's replies name things in Slack: channel links, slash commands, mentions.

The terminal's words are :data:`bot.setup.TERMINAL`; these are the same
sentences' Slack spelling, so ``bot.setup`` never asks which surface it serves.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.formatting import inert
from bot.setup import Words


@dataclass(frozen=True)
class SlackWords(Words):
    channel_example: str = "`#costs`"
    example_channel: str = "#channel"
    command_prefix: str = "/xai-usage"
    done_mark: str = ":white_check_mark: "
    paused_mark: str = ":pause_button: "
    list_page: int = 20  # a section and its Remove button each: within a message's 50 blocks

    def channel(self, channel_id: str, name: str = "") -> str:
        return f"<#{channel_id}>"

    def not_a_channel(self, word: str) -> str:
        return (
            f"“{word}” is not a channel I can see: pick it from Slack's #-autocomplete "
            "so it arrives as a link."
        )

    def actor(self, actor: str) -> str:
        return f"<@{actor}>"

    def number(self, ident: int) -> str:
        return f"*{ident}*"

    def person(self, user_id: str) -> str:
        return f"<@{user_id}>" if user_id else "someone"

    def references(self, text: str) -> str:
        return text  # Slack shows <#C…> and <@U…> as links

    def label(self, label: str) -> str:
        """Shown as typed: its markup and ``<@U…>`` inert in the reply (bot.formatting)."""
        return inert(label)


SLACK = SlackWords()
