"""Where each conversation runs: session -> (server, slot) pins and in-flight counts (pure state, no I/O).

Why: a server reuses a prompt prefix only from the KV cache of the slot that last held it, so
an agent's next step should land on the same server and slot. New conversations go to the
least busy equivalent server (this process's in-flight requests per slot; ties keep the
router's order) and to its slot with the fewest in-flight requests and pinned sessions. A
pinned conversation stays put unless its server is full (in-flight >= slots); a busy pinned
slot is never waited for: another free slot is used, or none (the server picks).

Only this process's requests are counted: a balancer in front of shared servers sees more.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from llamafile_provider.messages import ChatMessage, Role

S = TypeVar("S", bound="Placeable")

#: Conversations remembered; the least recently used is forgotten first.
MAX_PINS = 1024


class Placeable(Protocol):
    """What placement needs of a server: its URL and how many slots it has (None: unknown)."""

    url: str

    @property
    def slot_count(self) -> int | None: ...


@dataclass(frozen=True)
class Pin:
    url: str
    slot: int | None


def conversation_key(messages: Sequence[ChatMessage], session: str | None = None) -> str:
    """The caller's ``session``, else a stable hash of how the conversation starts: its first
    message and, when that is a system prompt (often shared by many agents), the first
    non-system message too (an agent's task). Later turns never change the key."""
    if session is not None:
        return "session:" + session
    head = list(messages[:1])
    if head and head[0].role is Role.SYSTEM:
        head += [m for m in messages if m.role is not Role.SYSTEM][:1]
    text = json.dumps([[m.role.value, m.content] for m in head], ensure_ascii=False)
    return "hash:" + hashlib.sha256(text.encode()).hexdigest()[:32]


class Placement:
    """The pins and in-flight counts of one provider."""

    def __init__(self, capacity: int = MAX_PINS) -> None:
        self.capacity = capacity
        self._pins: OrderedDict[str, Pin] = OrderedDict()
        self._in_flight: Counter[str] = Counter()
        self._slot_in_flight: Counter[tuple[str, int]] = Counter()

    def pin_of(self, key: str) -> Pin | None:
        return self._pins.get(key)

    def in_flight(self, url: str) -> int:
        return self._in_flight[url]

    def full(self, server: Placeable) -> bool:
        return self._in_flight[server.url] >= (server.slot_count or 1)

    def order(self, key: str | None, servers: Sequence[S]) -> list[S]:
        """``servers`` in the order to try: the pinned one first unless it is full, then the
        least busy (in-flight / slots), ties in the given order."""
        ranked = sorted(range(len(servers)),
                        key=lambda i: (self._in_flight[servers[i].url] / (servers[i].slot_count or 1), i))
        result = [servers[i] for i in ranked]
        pin = self._pins.get(key) if key else None
        pinned = next((s for s in servers if pin and s.url == pin.url), None)
        if pinned is not None and not self.full(pinned):
            result.remove(pinned)
            result.insert(0, pinned)
        return result

    def slot_for(self, key: str, server: Placeable, busy: frozenset[int] = frozenset()) -> int | None:
        """The slot to ask for: the pinned one when it is free here (not in flight from us, not
        in ``busy`` as the server reports), else the free slot with the fewest in-flight
        requests and pinned sessions; None when the slot count is unknown or every slot is busy."""
        count = server.slot_count
        if not count:
            return None
        pin = self._pins.get(key)
        if pin and pin.url == server.url and pin.slot is not None and pin.slot < count \
                and not self._slot_in_flight[(server.url, pin.slot)] and pin.slot not in busy:
            return pin.slot
        pinned = Counter(p.slot for p in self._pins.values() if p.url == server.url)
        free = [s for s in range(count) if s not in busy and not self._slot_in_flight[(server.url, s)]]
        if not free:
            return None
        return min(free, key=lambda s: (pinned[s], s))

    def begin(self, url: str, slot: int | None) -> None:
        self._in_flight[url] += 1
        if slot is not None:
            self._slot_in_flight[(url, slot)] += 1

    def end(self, url: str, slot: int | None) -> None:
        self._in_flight[url] -= 1
        if slot is not None:
            self._slot_in_flight[(url, slot)] -= 1

    def pin(self, key: str, url: str, slot: int | None) -> None:
        """Remember where ``key`` ran (most recently used last; the oldest beyond capacity go)."""
        self._pins[key] = Pin(url, slot)
        self._pins.move_to_end(key)
        while len(self._pins) > self.capacity:
            self._pins.popitem(last=False)
