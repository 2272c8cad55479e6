"""Typed application settings editable by admins (stored as JSON in ``settings``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .extensions import db
from .models import Setting
from .validation import Field, check_field


@dataclass(frozen=True)
class SettingDef:
    type: str  # boolean | integer | string
    default: Any
    description: str
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None

    @property
    def field(self) -> Field:
        return Field(self.type, minimum=self.minimum, maximum=self.maximum, max_length=self.max_length)


REGISTRY: dict[str, SettingDef] = {
    "registration_open": SettingDef("boolean", True, "allow new sign-ups"),
    "require_email_verification": SettingDef(
        "boolean", True, "users must verify their email before scheduling publications"
    ),
    "default_plan": SettingDef("string", "free", "plan code given to new users", max_length=32),
    "ai_max_hashtags": SettingDef("integer", 5, "hashtags returned by AI generation", 0, 30),
    "announcement": SettingDef("string", "", "banner text shown in the dashboard", max_length=500),
}


def coerce(key: str, value: Any) -> Any:
    """Validate ``value`` for setting ``key`` with the checks of every API field (strings:
    stripped, no NUL, no lone surrogates, length); return it or raise ValueError."""
    return check_field(REGISTRY[key].field, value)


def get_setting(key: str) -> Any:
    row = db.session.get(Setting, key)
    if row is None:
        return REGISTRY[key].default
    try:
        return coerce(key, row.value)
    except ValueError:
        return REGISTRY[key].default


def all_settings() -> list[dict[str, Any]]:
    rows = {s.key: s for s in db.session.scalars(db.select(Setting))}
    out = []
    for key, d in REGISTRY.items():
        value = rows[key].value if key in rows else d.default
        out.append({"key": key, "value": value, "type": d.type, "description": d.description,
                    "default": d.default})
    return out
