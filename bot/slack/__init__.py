"""The Slack app: the only part of the project that imports Bolt or slack_sdk."""
