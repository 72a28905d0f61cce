"""Adding members to an existing ``str`` Enum (forge's ``LlamafileModelName``), on 3.10-3.13.

Enums with members cannot be subclassed, and ``Enum`` has no public "add a member" API, so the
member is built the way ``EnumType`` builds its own (``_member_type_.__new__``, ``_name_``,
``_value_``) and entered into the three tables lookups and iteration read: ``_member_map_``
(names, ``__members__``), ``_member_names_`` (iteration order) and ``_value2member_map_``
(``Enum(value)``, which pydantic's validator calls). Those three names are the same on every
supported Python; nothing else is touched. Pure: no imports beyond ``enum``.
"""

from __future__ import annotations

import enum
import re


def member_name(value: str, taken: set[str]) -> str:
    """An identifier for ``value`` ("gemma-3-270m-it" -> "GEMMA_3_270M_IT"), unique in ``taken``."""
    base = re.sub(r"\W+", "_", value).strip("_").upper() or "MODEL"
    if base[0].isdigit():
        base = "M_" + base
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def add_member(enum_cls: type[enum.Enum], value: str) -> enum.Enum:
    """The member of ``enum_cls`` whose value is ``value``, added if it is not there yet."""
    existing = enum_cls._value2member_map_.get(value)
    if existing is not None:
        return existing
    member_type = getattr(enum_cls, "_member_type_", str)
    member = member_type.__new__(enum_cls, value)  # type: ignore[call-overload]
    member._name_ = member_name(value, set(enum_cls._member_map_))
    member._value_ = value
    member.__objclass__ = enum_cls  # type: ignore[attr-defined]
    member.__init__(value)  # type: ignore[misc]
    enum_cls._member_map_[member._name_] = member
    enum_cls._member_names_.append(member._name_)
    enum_cls._value2member_map_[value] = member
    return member
