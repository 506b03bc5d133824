"""Provenance lock: what made the stored stimuli cannot be changed underneath them.

Every stimulus is traced to its condition (method, parameters, model) and the study's
decoding settings and seed; the export reads the condition's parameters at export time.
Changing any of them after stimuli exist would relabel those stimuli with settings that
did not make them (same artifact hash, new parameters in the export). So once a condition
has stimuli these fields are frozen: on ``save()`` of the model itself, so that no path
(the admin, a shell, a service) can change them; the admin shows them read-only.
Changing them means a new condition or a new study version (a changed spec under a new
slug). ``QuerySet.update()`` bypasses ``save()``; the platform never uses it on these fields.
"""

from __future__ import annotations

from typing import Any

NEW_VERSION_ADVICE = (
    "stimuli were already generated with them, so changing them would relabel those stimuli; "
    "add a new condition instead, or load the changed spec as a new study version (a new slug)"
)


class ProvenanceLockedError(ValueError):
    """A provenance field of a definition that stimuli were generated with was changed."""

    def __init__(self, obj: Any, fields: list[str]) -> None:
        self.fields = fields
        label = obj._meta.verbose_name
        super().__init__(f"{label} {obj}: {', '.join(fields)} cannot change: {NEW_VERSION_ADVICE}")


class ProvenanceGuarded:
    """Mixin for models whose ``provenance_fields`` freeze once ``provenance_stimuli()`` exist."""

    provenance_fields: tuple[str, ...] = ()

    def provenance_stimuli(self):  # pragma: no cover - every model defines it
        raise NotImplementedError

    def provenance_locked(self) -> bool:
        return self.pk is not None and self.provenance_stimuli().exists()  # type: ignore[attr-defined]

    def provenance_frozen(self) -> frozenset[str]:
        """The provenance fields as stimuli were made with them (all once locked, else none): a
        record, not input, so ``clean()`` leaves their checks to the job start (a locked field
        is read-only in the admin, and an error on it was a 500 there)."""
        return frozenset(self.provenance_fields) if self.provenance_locked() else frozenset()

    def provenance_changed(self) -> list[str]:
        """The provenance fields whose value differs from the stored row."""
        if self.pk is None:  # type: ignore[attr-defined]
            return []
        attnames = {name: self._meta.get_field(name).attname for name in self.provenance_fields}  # type: ignore[attr-defined]
        stored = type(self).objects.filter(pk=self.pk).values(*attnames.values()).first()  # type: ignore[attr-defined]
        if stored is None:
            return []
        return [name for name, attname in attnames.items() if getattr(self, attname) != stored[attname]]

    def provenance_check(self, update_fields=None) -> None:
        fields = set(self.provenance_fields)
        if update_fields is not None and not fields & set(update_fields):
            return
        changed = self.provenance_changed()
        if changed and self.provenance_locked():
            raise ProvenanceLockedError(self, changed)

    def save(self, *args, **kwargs) -> None:
        self.provenance_check(kwargs.get("update_fields"))
        super().save(*args, **kwargs)  # type: ignore[misc]
