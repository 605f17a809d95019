"""Acme AI's costs for xai-usage: a provider plugin outside the xai-usage tree."""
