"""Cost providers, loaded as pluggy plugins. xAI is the first, built-in one."""

from providers.hookspecs import hookimpl
from providers.types import (
    BillingSnapshot,
    CheckResult,
    CostFetch,
    CostRow,
    CredentialField,
    Credentials,
    Provider,
    ProviderError,
    Reason,
    ResultTruncated,
)

__all__ = [
    "BillingSnapshot",
    "CheckResult",
    "CostFetch",
    "CostRow",
    "CredentialField",
    "Credentials",
    "Provider",
    "ProviderError",
    "Reason",
    "ResultTruncated",
    "hookimpl",
]
