"""OpenAI as a provider plugin: registered through ``xai_usage.providers`` like any other."""
