"""An in-memory Redis keyspace: the commands the project's Lua scripts use, with Redis's replies.

Arguments are bytes, as a script hands them to Redis. Replies are Python values in the shape of
Redis's: ``int``, ``bytes``, ``None`` (a nil bulk), lists, and ``Status`` for a simple string.
An error reply is raised as ``CommandError`` carrying Redis's message. Number formats follow the
Redis the tests compare against (7.0): scores are printed with ``%.17g``, HINCRBYFLOAT computes in
x86 long double and prints with ``%.17Lf``, trailing zeros removed.

Time is whatever the caller says it is (``now``, epoch seconds): TIME returns it and expiry is
judged against it, so one script run sees one instant.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from typing import TypeAlias, TypeVar

Reply: TypeAlias = "int | bytes | list[Reply] | Status | None"

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
NOT_INTEGER = "ERR value is not an integer or out of range"
NOT_FLOAT = "ERR value is not a valid float"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# What Redis's string2ll accepts: no sign on zero, no leading zeros, no spaces, no '+'.
_INTEGER = re.compile(rb"0|-?[1-9][0-9]*")
# What strtod accepts in decimal (Redis then refuses NaN and trailing bytes).
_FLOAT = re.compile(rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?)", re.I)


class CommandError(Exception):
    """An error reply; the message starts with Redis's error code (``ERR``, ``WRONGTYPE``)."""


@dataclass(frozen=True)
class Status:
    """A simple string reply (``+OK``), which a script sees as ``{ok = text}``."""

    text: bytes


OK = Status(b"OK")


class Hash(dict[bytes, bytes]):
    pass


class SortedSet(dict[bytes, float]):
    """Member -> score; ordered on read (the sets a script keeps are small)."""

    def ordered(self) -> list[tuple[bytes, float]]:
        return sorted(self.items(), key=lambda item: (item[1], item[0]))


Value = bytes | Hash | SortedSet
V = TypeVar("V", bytes, Hash, SortedSet)


def parse_int(arg: bytes, error: str = NOT_INTEGER) -> int:
    if _INTEGER.fullmatch(arg) is None or not INT64_MIN <= int(arg) <= INT64_MAX:
        raise CommandError(error)
    return int(arg)


def parse_float(arg: bytes, error: str = NOT_FLOAT) -> float:
    if _FLOAT.fullmatch(arg) is None:
        raise CommandError(error)
    return float(arg)


def format_double(value: float) -> bytes:
    """A double the way Redis 7.0 prints it (scores, and Lua numbers passed as arguments)."""
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    if math.isnan(value):
        return b"-nan" if math.copysign(1.0, value) < 0 else b"nan"
    return b"%.17g" % value


def _long_double(value: Fraction) -> Fraction:
    """``value`` rounded to x86's 80-bit long double (a 64-bit significand, ties to even)."""
    if value == 0:
        return value
    magnitude = abs(value)
    exponent = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if Fraction(2) ** exponent > magnitude:
        exponent -= 1
    scale = Fraction(2) ** (63 - exponent)
    rounded = round(magnitude * scale) / scale  # round() on a Fraction rounds half to even
    return -rounded if value < 0 else rounded


# The largest finite x86 long double.
LONG_DOUBLE_MAX = (2 - Fraction(1, 2**63)) * Fraction(2) ** 16383


def _parse_long_double(arg: bytes, error: str) -> Fraction | float:
    """A long double as strtold reads it (infinities as floats); NaN and overflow are refused."""
    if _FLOAT.fullmatch(arg) is None:
        raise CommandError(error)
    if b"inf" in arg.lower():
        return float(arg)
    value = _long_double(Fraction(arg.decode()))
    if abs(value) > LONG_DOUBLE_MAX:
        raise CommandError(error)
    return value


def _format_long_double(value: Fraction) -> bytes:
    """``%.17Lf`` with the trailing zeros (and a bare point) removed, as HINCRBYFLOAT replies."""
    with localcontext() as ctx:
        ctx.prec = 6000  # a long double's exact decimal expansion fits
        exact = Decimal(value.numerator) / Decimal(value.denominator)
        text = format(exact.quantize(Decimal("1e-17"), rounding=ROUND_HALF_EVEN), "f")
    text = text.rstrip("0").rstrip(".")
    return b"0" if text == "-0" else text.encode()


@dataclass(frozen=True)
class Command:
    run: Callable[[Keyspace, list[bytes]], Reply]
    arity: int  # as in Redis: the exact argument count with the name, or at least -arity


class Keyspace:
    """Keys with their values and expiry deadlines; one caller at a time (the caller locks)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._data: dict[bytes, Value] = {}
        self._expires: dict[bytes, int] = {}  # epoch milliseconds, as Redis keeps them

    def execute(self, args: list[bytes]) -> Reply:
        """Run one command (name first); unknown names and wrong arities are error replies."""
        command = COMMANDS.get(args[0].upper().decode(errors="replace"))
        if command is None:
            supported = ", ".join(sorted(COMMANDS))
            raise CommandError(
                f"ERR Unknown Redis command called from script: '{args[0].decode(errors='replace')}' "
                f"is not implemented by the local keyspace (it has: {supported})"
            )
        if len(args) != command.arity if command.arity > 0 else len(args) < -command.arity:
            raise CommandError("ERR Wrong number of args calling Redis command from script")
        return command.run(self, args)

    # -- keys --------------------------------------------------------------------------------------

    def _get(self, key: bytes) -> Value | None:
        deadline = self._expires.get(key)
        if deadline is not None and self._now_ms() > deadline:
            self._delete(key)
        return self._data.get(key)

    def _now_ms(self) -> int:
        return math.floor(self.now * 1000)

    def _delete(self, key: bytes) -> bool:
        self._expires.pop(key, None)
        return self._data.pop(key, None) is not None

    def _typed(self, key: bytes, kind: type[V]) -> V | None:
        value = self._get(key)
        if value is not None and not isinstance(value, kind):
            raise CommandError(WRONGTYPE)
        return value

    def _hash(self, key: bytes, create: bool = False) -> Hash | None:
        value = self._typed(key, Hash)
        if value is None and create:
            value = self._data[key] = Hash()
        return value

    def _zset(self, key: bytes, create: bool = False) -> SortedSet | None:
        value = self._typed(key, SortedSet)
        if value is None and create:
            value = self._data[key] = SortedSet()
        return value

    def _drop_if_empty(self, key: bytes, value: Hash | SortedSet) -> None:
        if not value:
            self._delete(key)

    # -- generic and strings -----------------------------------------------------------------------

    def time(self, args: list[bytes]) -> Reply:
        micros = round(self.now * 1_000_000)
        return [b"%d" % (micros // 1_000_000), b"%d" % (micros % 1_000_000)]

    def get(self, args: list[bytes]) -> Reply:
        return self._typed(args[1], bytes)

    def set(self, args: list[bytes]) -> Reply:
        key, value = args[1], args[2]
        condition, keep_ttl, give_old, ttl_ms = b"", False, False, None
        options = iter(args[3:])
        for option in options:
            word = option.upper()
            if word in (b"NX", b"XX") and not condition:
                condition = word
            elif word == b"KEEPTTL" and ttl_ms is None:
                keep_ttl = True
            elif word == b"GET":
                give_old = True
            elif word in (b"EX", b"PX") and ttl_ms is None and not keep_ttl:
                amount = parse_int(next(options, b""))
                if amount <= 0:
                    raise CommandError("ERR invalid expire time in 'set' command")
                ttl_ms = amount * 1000 if word == b"EX" else amount
            else:
                raise CommandError("ERR syntax error")
        old = self._typed(key, bytes) if give_old else None
        exists = self._get(key) is not None
        if (condition == b"NX" and exists) or (condition == b"XX" and not exists):
            return old
        deadline = self._expires.get(key) if keep_ttl else None
        self._delete(key)
        self._data[key] = value
        if ttl_ms is not None:
            self._expires[key] = self._now_ms() + ttl_ms
        elif deadline is not None:
            self._expires[key] = deadline
        return old if give_old else OK

    def delete(self, args: list[bytes]) -> Reply:
        return sum(self._get(key) is not None and self._delete(key) for key in args[1:])

    def exists(self, args: list[bytes]) -> Reply:
        return sum(self._get(key) is not None for key in args[1:])

    def _expire(self, args: list[bytes], unit_ms: int) -> Reply:
        amount = parse_int(args[2])
        flags = {a.upper() for a in args[3:]}
        for flag in flags - {b"NX", b"XX", b"GT", b"LT"}:
            raise CommandError(f"ERR Unsupported option {flag.decode(errors='replace')}")
        if b"NX" in flags and flags & {b"XX", b"GT", b"LT"}:
            raise CommandError("ERR NX and XX, GT or LT options at the same time are not compatible")
        if {b"GT", b"LT"} <= flags:
            raise CommandError("ERR GT and LT options at the same time are not compatible")
        key = args[1]
        if self._get(key) is None:
            return 0
        deadline = self._now_ms() + amount * unit_ms
        current = self._expires.get(key)  # None: never expires, later than any deadline
        if (
            (b"NX" in flags and current is not None)
            or (b"XX" in flags and current is None)
            or (b"GT" in flags and (current is None or deadline <= current))
            or (b"LT" in flags and current is not None and deadline >= current)
        ):
            return 0
        if amount <= 0:
            self._delete(key)
        else:
            self._expires[key] = deadline
        return 1

    def expire(self, args: list[bytes]) -> Reply:
        return self._expire(args, 1000)

    def pexpire(self, args: list[bytes]) -> Reply:
        return self._expire(args, 1)

    # -- hashes ------------------------------------------------------------------------------------

    def hget(self, args: list[bytes]) -> Reply:
        fields = self._hash(args[1])
        return fields.get(args[2]) if fields else None

    def hmget(self, args: list[bytes]) -> Reply:
        fields = self._hash(args[1]) or Hash()
        return [fields.get(field) for field in args[2:]]

    def hset(self, args: list[bytes]) -> Reply:
        if len(args) % 2:
            raise CommandError("ERR wrong number of arguments for 'hset' command")
        fields = self._hash(args[1], create=True)
        assert fields is not None
        added = 0
        for i in range(2, len(args), 2):
            added += args[i] not in fields
            fields[args[i]] = args[i + 1]
        return added

    def hdel(self, args: list[bytes]) -> Reply:
        fields = self._hash(args[1])
        if fields is None:
            return 0
        removed = sum(fields.pop(field, None) is not None for field in args[2:])
        self._drop_if_empty(args[1], fields)
        return removed

    def hincrby(self, args: list[bytes]) -> Reply:
        by = parse_int(args[3])
        fields = self._hash(args[1], create=True)
        assert fields is not None
        old = parse_int(fields.get(args[2], b"0"), "ERR hash value is not an integer")
        new = old + by
        if not INT64_MIN <= new <= INT64_MAX:
            raise CommandError("ERR increment or decrement would overflow")
        fields[args[2]] = b"%d" % new
        return new

    def hincrbyfloat(self, args: list[bytes]) -> Reply:
        by = _parse_long_double(args[3], NOT_FLOAT)
        if isinstance(by, float):
            raise CommandError("ERR value is NaN or Infinity")
        fields = self._hash(args[1], create=True)
        assert fields is not None
        old = _parse_long_double(fields.get(args[2], b"0"), "ERR hash value is not a float")
        new = old if isinstance(old, float) else _long_double(old + by)
        if isinstance(new, float) or abs(new) > LONG_DOUBLE_MAX:
            raise CommandError("ERR increment would produce NaN or Infinity")
        text = _format_long_double(new)
        fields[args[2]] = text
        return text

    def hgetall(self, args: list[bytes]) -> Reply:
        return [part for item in (self._hash(args[1]) or Hash()).items() for part in item]

    # -- sorted sets -------------------------------------------------------------------------------

    def zadd(self, args: list[bytes]) -> Reply:
        i, condition, count_changed = 2, b"", False
        while i < len(args) and args[i].upper() in (b"NX", b"XX", b"CH"):
            word = args[i].upper()
            if word == b"CH":
                count_changed = True
            elif condition and condition != word:
                raise CommandError("ERR XX and NX options at the same time are not compatible")
            else:
                condition = word
            i += 1
        pairs = args[i:]
        if not pairs or len(pairs) % 2:
            raise CommandError("ERR syntax error")
        scores = [parse_float(pairs[j]) for j in range(0, len(pairs), 2)]
        members = self._zset(args[1], create=condition != b"XX")
        if members is None:
            return 0
        added = changed = 0
        for score, member in zip(scores, pairs[1::2], strict=True):
            old = members.get(member)
            if (condition == b"NX" and old is not None) or (condition == b"XX" and old is None):
                continue
            added += old is None
            changed += old is not None and old != score
            members[member] = score
        self._drop_if_empty(args[1], members)
        return added + changed if count_changed else added

    def zrem(self, args: list[bytes]) -> Reply:
        members = self._zset(args[1])
        if members is None:
            return 0
        removed = sum(members.pop(member, None) is not None for member in args[2:])
        self._drop_if_empty(args[1], members)
        return removed

    def zcard(self, args: list[bytes]) -> Reply:
        return len(self._zset(args[1]) or SortedSet())

    def zrange(self, args: list[bytes]) -> Reply:
        with_scores = [a.upper() for a in args[4:]] == [b"WITHSCORES"]
        if len(args) > 4 and not with_scores:
            raise CommandError("ERR the local keyspace supports ZRANGE by index, with WITHSCORES only")
        start, stop = parse_int(args[2]), parse_int(args[3])
        members = self._zset(args[1])
        ordered = members.ordered() if members else []
        size = len(ordered)
        start = max(0, start + size if start < 0 else start)
        stop = min(size - 1, stop + size if stop < 0 else stop)
        chosen = ordered[start : stop + 1] if start <= stop else []
        if with_scores:
            return [part for member, score in chosen for part in (member, format_double(score))]
        return [member for member, _ in chosen]

    def zremrangebyscore(self, args: list[bytes]) -> Reply:
        low, low_open = _score_bound(args[2])
        high, high_open = _score_bound(args[3])
        members = self._zset(args[1])
        if members is None:
            return 0
        doomed = [
            m
            for m, s in members.items()
            if (s > low if low_open else s >= low) and (s < high if high_open else s <= high)
        ]
        for member in doomed:
            del members[member]
        self._drop_if_empty(args[1], members)
        return len(doomed)


def _score_bound(arg: bytes) -> tuple[float, bool]:
    """A ZRANGEBYSCORE-style bound: ``(`` makes it exclusive."""
    exclusive = arg.startswith(b"(")
    return parse_float(arg[1:] if exclusive else arg, "ERR min or max is not a float"), exclusive


COMMANDS: dict[str, Command] = {
    "TIME": Command(Keyspace.time, 1),
    "GET": Command(Keyspace.get, 2),
    "SET": Command(Keyspace.set, -3),
    "DEL": Command(Keyspace.delete, -2),
    "EXISTS": Command(Keyspace.exists, -2),
    "EXPIRE": Command(Keyspace.expire, -3),
    "PEXPIRE": Command(Keyspace.pexpire, -3),
    "HGET": Command(Keyspace.hget, 3),
    "HMGET": Command(Keyspace.hmget, -3),
    "HSET": Command(Keyspace.hset, -4),
    "HDEL": Command(Keyspace.hdel, -3),
    "HINCRBY": Command(Keyspace.hincrby, 4),
    "HINCRBYFLOAT": Command(Keyspace.hincrbyfloat, 4),
    "HGETALL": Command(Keyspace.hgetall, 2),
    "ZADD": Command(Keyspace.zadd, -4),
    "ZREM": Command(Keyspace.zrem, -3),
    "ZCARD": Command(Keyspace.zcard, 2),
    "ZRANGE": Command(Keyspace.zrange, -4),
    "ZREMRANGEBYSCORE": Command(Keyspace.zremrangebyscore, 4),
}
