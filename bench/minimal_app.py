"""The Slack benchmark's yardstick in a process of its own: Bolt with nothing but an ack.

Run as ``python -m bench.minimal_app`` with ``SLACK_API_URL``, ``SLACK_BOT_TOKEN`` and
``SLACK_SIGNING_SECRET`` set: a bare ``slack_bolt.App`` whose one ``/xai-usage``
listener only calls ``ack()``, on waitress configured as ``xai-usage serve --http``
configures it (:func:`bot.slack.server.http_server`). Prints its URL once serving;
stops on SIGTERM.
"""

from __future__ import annotations

import os

from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot.slack.server import THREADS, http_server
from bot.slack.settings import HttpLimits


def minimal_app(api_url: str, token: str, signing_secret: str) -> App:
    app = App(client=WebClient(token=token, base_url=api_url), signing_secret=signing_secret)

    @app.command("/xai-usage")
    def only_ack(ack: Ack) -> None:
        ack()

    return app


def main() -> None:
    app = minimal_app(
        os.environ["SLACK_API_URL"],
        os.environ["SLACK_BOT_TOKEN"],
        os.environ["SLACK_SIGNING_SECRET"],
    )
    server = http_server(
        SlackRequestHandler(app), HttpLimits(), host="127.0.0.1", port=0, threads=THREADS
    )
    print(f"http://127.0.0.1:{server.effective_port}", flush=True)
    server.run()


if __name__ == "__main__":
    main()
