"""Bolt listeners, one module per kind, as in Slack's starter template."""

from slack_bolt import App

from bot.slack.listeners import actions, alert_actions, commands, events, views


def register_listeners(app: App) -> None:
    commands.register(app)
    views.register(app)
    actions.register(app)
    alert_actions.register(app)
    events.register(app)
