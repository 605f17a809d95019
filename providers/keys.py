"""What a pasted key's text tells before any request, for any provider.

A key is a secret even when malformed, so nothing here echoes it. Two checks
hold for any service's key: it is one unbroken value (a line break or a space
means it was copied badly), and it is long enough to be whole (services show a
key once, and a cut one cannot be recovered). :func:`pasted_key_problem` makes
them, in that order, with a service's own check between the two.

Services that read an organization's costs with an admin key also issue other
kinds of key, told apart by their prefix (``sk-admin-…`` beside ``sk-proj-…``).
:class:`AdminKey` declares a service's admin key once and answers for it: the
credential field and its check, the refusal of another kind of key before it
goes near a header (``not_admin_key``, which a person must fix), and the key's
masked form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from providers.types import CredentialField, Credentials, ProviderError, Reason

NOT_ADMIN_KEY = "not_admin_key"
"""The reason code of a key the service has, but not an admin key (retrying cannot help)."""


def pasted_key_problem(
    value: str,
    *,
    name: str,
    service: str,
    min_length: int,
    key_page: str,
    kind_problem: Callable[[str], str | None] = lambda value: None,
) -> str | None:
    """What is wrong with a pasted, non-empty key, or None.

    ``name`` is what the service calls the key ("admin key"), ``key_page``
    where a person makes one; ``kind_problem`` is the service's own check (a
    wrong kind of key), made after the key is one value and before its length.
    """
    if any(char.isspace() for char in value):
        return f"The {name} contains spaces or line breaks. Copy it again as one unbroken value."
    if problem := kind_problem(value):
        return problem
    if len(value) < min_length:
        return (
            f"That {name} is too short to be complete. {service} shows a key only once, when "
            f"it is created: copy the whole value, or create a new key in {key_page}."
        )
    return None


@dataclass(frozen=True)
class AdminKey:
    """A service's admin key: how it looks, and the words for each way a pasted one is wrong.

    ``called`` and ``creator`` are phrases with their article ("an OpenAI admin
    key", "an Organization Owner"), as the messages use them; ``other_kinds``
    names the service's other keys by prefix, the first that matches naming it,
    so a more particular prefix goes before a broader one.
    """

    service: str
    name: str
    """What the service calls it, in its own case: "admin key", "Admin key"."""
    called: str
    prefix: str
    min_length: int
    creator: str
    key_page: str
    cannot: str
    """What another kind of key cannot do: "cannot read the organization's cost report"."""
    other_kinds: tuple[tuple[str, str], ...]
    field: str = "admin_key"
    """The credential field that holds the key."""

    def credential_field(self, *, help: str, env_var: str) -> CredentialField:
        """The credential field that holds the key: secret, checked by :meth:`problem`."""
        return CredentialField(
            name=self.field,
            label=self.name[:1].upper() + self.name[1:],
            secret=True,
            help=help,
            placeholder=f"{self.prefix}…",
            env_var=env_var,
            validate=self.problem,
        )

    def other_kind(self, value: str) -> str | None:
        """What kind of key ``value`` is when it is not an admin key, by its prefix."""
        if value.startswith(self.prefix):
            return None
        return next((kind for prefix, kind in self.other_kinds if value.startswith(prefix)), None)

    def not_admin_message(self, kind: str) -> str:
        return (
            f"That is {kind}, which {self.cannot}. Paste an {self.name} ({self.prefix}…): "
            f"{self.creator} creates one in {self.key_page}."
        )

    def problem(self, value: str) -> str | None:
        """The credential field's check (``CredentialField.validate``): no network."""
        if not value:
            return f"Paste {self.called} ({self.prefix}…), created in {self.key_page}."
        return pasted_key_problem(
            value,
            name=self.name,
            service=self.service,
            min_length=self.min_length,
            key_page=self.key_page,
            kind_problem=self._kind_problem,
        )

    def read(self, credentials: Credentials) -> str:
        """The stripped admin key, refused before it goes near a header if it is not one."""
        key = str(credentials.get(self.field) or "").strip()
        if kind := self.other_kind(key):
            raise self.refused(NOT_ADMIN_KEY, self.not_admin_message(kind))
        if problem := self.problem(key):
            raise ProviderError(Reason.INVALID_KEY, problem, field=self.field)
        return key

    def refused(self, reason: Reason | str, message: str) -> ProviderError:
        """The key refused, by its prefix or by the service: on its field, for a person
        to fix (a new key, not a retry)."""
        return ProviderError(reason, message, field=self.field, needs_person=True)

    def mask(self, credentials: Credentials) -> str:
        """The key as people may see it: its prefix and last four characters."""
        key = str(credentials.get(self.field) or "").strip()
        if len(key) < 16:
            return "…"
        prefix = self.prefix if key.startswith(self.prefix) else key[:3]
        return f"{prefix}…{key[-4:]}"

    def _kind_problem(self, value: str) -> str | None:
        if kind := self.other_kind(value):
            return self.not_admin_message(kind)
        if not value.startswith(self.prefix):
            creator = self.creator[:1].upper() + self.creator[1:]
            return (
                f"That is not {self.called}: {self.name}s start with {self.prefix}. "
                f"{creator} creates one in {self.key_page}."
            )
        return None
