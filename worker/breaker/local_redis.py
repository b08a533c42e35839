"""Redis Lua scripts run in this process, against an in-memory keyspace.

So a rule written once in Lua also holds when Redis cannot be reached: the same script text runs
here, on Lua 5.1 (the version Redis embeds), with Redis's conversions between Lua and Redis values:

* command arguments: strings as they are, numbers printed with C's ``%.17g`` (as Redis 7.0 does),
  anything else an error;
* command replies to Lua: integer -> number, bulk -> string, nil -> false, array -> table,
  status -> ``{ok = ...}``, error -> raised by ``redis.call``, ``{err = ...}`` from ``redis.pcall``;
* the script's result: number -> integer (truncated), string -> bulk, true -> 1, false and nil ->
  nil, a table -> ``{err = ...}`` an error, ``{ok = ...}`` a status, else an array that stops at
  its first nil.

Replies come back as redis-py returns them (bytes, int, None, lists; error replies raised as
``redis.ResponseError``), so ``LocalRedis.register_script`` can stand in for
``redis.Redis.register_script``. The commands are those in ``keyspace.COMMANDS``; any other is an
error naming what is supported. Time (TIME, expiry) is the injected clock, read once per run.

One lock per ``LocalRedis`` is held for a whole script run, so scripts are atomic as in Redis. The
Lua runtime is created on the first run, and a fork (Celery prefork) waits for a running script to
finish, so the child gets a consistent copy and a fresh lock.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import lupa.lua51 as lua
import redis

from worker.breaker.keyspace import (
    INT64_MAX,
    INT64_MIN,
    CommandError,
    Keyspace,
    Reply,
    Status,
)

Encodable = bytes | str | int | float

# Run once per runtime: returns compile(source, name), which returns run(keys, argv). A script sees
# only the globals below (reading another is an error, as is writing any), and its error becomes
# an {err = ...} result rather than a Lua error crossing into Python.
_BOOTSTRAP = """
local dispatch = ...
local format, select, type, unpack = string.format, select, type, unpack
-- Numbers become strings the way Redis 7.0 makes them (snprintf '%.17g'), before Python sees them.
local function command(...)
  local n = select('#', ...)
  for i = 1, n do
    if type((select(i, ...))) == 'number' then
      local args = {...}
      for j = i, n do
        if type(args[j]) == 'number' then args[j] = format('%.17g', args[j]) end
      end
      return dispatch(unpack(args, 1, n))
    end
  end
  return dispatch(...)
end
local redis = {}
function redis.call(...)
  local ok, value = command(...)
  if ok then return value end
  error(value, 0)
end
function redis.pcall(...)
  local ok, value = command(...)
  if ok then return value end
  return {err = value}
end
function redis.error_reply(message)
  if type(message) ~= 'string' then error('wrong number or type of arguments', 2) end
  if string.sub(message, 1, 1) == '-' then message = string.sub(message, 2) end
  return {err = message}
end
function redis.status_reply(message)
  if type(message) ~= 'string' then error('wrong number or type of arguments', 2) end
  return {ok = message}
end

local globals = {redis = redis, _VERSION = _VERSION}
for _, name in ipairs({'assert', 'error', 'getmetatable', 'ipairs', 'loadstring', 'next', 'pairs',
    'pcall', 'rawequal', 'rawget', 'rawset', 'select', 'setmetatable', 'tonumber', 'tostring', 'type',
    'unpack', 'xpcall'}) do
  globals[name] = _G[name]
end
for _, name in ipairs({'string', 'table', 'math'}) do
  local copy = {}
  for k, v in pairs(_G[name]) do copy[k] = v end
  globals[name] = copy
end

local function lookup(_, name)
  local value = globals[name]
  if value == nil then
    error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
  end
  return value
end
local function refuse() error('Attempt to modify a readonly table', 2) end

return function(source, name)
  local fn, problem = loadstring(source, '@' .. name)
  if fn == nil then return nil, problem end
  local env = setmetatable({}, {__index = lookup, __newindex = refuse})
  setfenv(fn, env)
  return function(keys, argv)
    rawset(env, 'KEYS', keys)
    rawset(env, 'ARGV', argv)
    local ok, result = pcall(fn)
    if ok then return result end
    if type(result) == 'table' and type(result.err) == 'string' then return result end
    return {err = tostring(result)}
  end
end
"""


class LocalRedis:
    """A keyspace and the Lua runtime that runs scripts against it (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._keyspace = Keyspace()
        self._lock = threading.Lock()
        self._host: _LuaHost | None = None
        ref = weakref.ref(self)
        os.register_at_fork(
            before=functools.partial(_before_fork, ref),
            after_in_parent=functools.partial(_after_fork_in_parent, ref),
            after_in_child=functools.partial(_after_fork_in_child, ref),
        )

    def register_script(self, source: str | bytes) -> LocalScript:
        """Like ``redis.Redis.register_script``: call the result with ``keys`` and ``args``."""
        return LocalScript(self, source)

    def eval(self, source: str | bytes, numkeys: int, *keys_and_args: Encodable) -> Any:
        return self.register_script(source)(keys_and_args[:numkeys], keys_and_args[numkeys:])

    def run(self, sha: str, source: bytes, keys: Sequence[Encodable], args: Sequence[Encodable]) -> Any:
        """One script run, atomic against every other run on this keyspace."""
        encoded_keys = [k if type(k) is bytes else _encode(k) for k in keys]
        encoded_args = [a if type(a) is bytes else _encode(a) for a in args]
        with self._lock:
            if self._host is None:
                self._host = _LuaHost(self._keyspace)
            self._keyspace.now = self._clock()
            return self._host.run(sha, source, encoded_keys, encoded_args)


class LocalScript:
    """A script bound to a ``LocalRedis``; compiled on its first run in a runtime."""

    def __init__(self, owner: LocalRedis, source: str | bytes) -> None:
        self.owner = owner
        self.script = source.encode() if isinstance(source, str) else source
        self.sha = hashlib.sha1(self.script, usedforsecurity=False).hexdigest()  # Redis's script id

    def __call__(self, keys: Sequence[Encodable] = (), args: Sequence[Encodable] = ()) -> Any:
        return self.owner.run(self.sha, self.script, keys, args)


class _LuaHost:
    """The Lua runtime of one keyspace, its compiled scripts and the conversions at its border."""

    def __init__(self, keyspace: Keyspace) -> None:
        self._keyspace = keyspace
        self._lua = lua.LuaRuntime(
            encoding=None, register_eval=False, register_builtins=False, unpack_returned_tuples=True
        )
        self._compile = self._lua.execute(_BOOTSTRAP, self._dispatch)
        self._scripts: dict[str, Any] = {}

    def run(self, sha: str, source: bytes, keys: list[bytes], args: list[bytes]) -> Any:
        script = self._scripts.get(sha)
        if script is None:
            script = self._compile(source, b"user_script")
            if isinstance(script, tuple):  # (nil, the compiler's message)
                raise redis.ResponseError(f"Error compiling script (new function): {script[1].decode()}")
            self._scripts[sha] = script
        result = script(self._lua.table_from(keys), self._lua.table_from(args))
        reply = self._reply(result)
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    def _dispatch(self, *args: Any) -> tuple[bool, Any]:
        """``redis.call`` and ``redis.pcall``: (True, the reply in Lua) or (False, the error)."""
        try:
            if not args:
                raise CommandError("ERR Please specify at least one argument for this redis lib call")
            if not all(type(a) is bytes for a in args):  # numbers were made strings in Lua
                raise CommandError("ERR Lua redis lib command arguments must be strings or integers")
            reply = self._keyspace.execute(list(args))
        except CommandError as exc:
            return False, str(exc).encode()
        return True, self._to_lua(reply)

    def _to_lua(self, reply: Reply) -> Any:
        if reply is None:
            return False
        if isinstance(reply, list):
            return self._lua.table_from(
                [item if type(item) is bytes or type(item) is int else self._to_lua(item) for item in reply]
            )
        if isinstance(reply, Status):
            return self._lua.table_from({b"ok": reply.text})
        return reply

    def _reply(self, value: Any) -> Any:
        """A Lua value as redis-py would read the reply Redis makes of it."""
        if value is None or value is False:
            return None
        if value is True:
            return 1
        if isinstance(value, int | float):
            return _integer_reply(value)
        if isinstance(value, bytes):
            return value
        if lua.lua_type(value) != "table":
            return None  # functions and other Lua values: Redis replies nil
        err, ok, double = value[b"err"], value[b"ok"], value[b"double"]
        if isinstance(err, bytes):
            return redis.ResponseError(_error_message(err))
        if isinstance(ok, bytes):
            return ok
        if isinstance(double, int | float):
            return float(double)  # a RESP3 double, which redis-py reads as a float
        items = []
        i = 1
        while (item := value[i]) is not None:
            items.append(self._reply(item))
            i += 1
        return items


def _integer_reply(number: float) -> int:
    """Redis casts a Lua number to a C long long: truncated; NaN and overflow give the minimum."""
    if isinstance(number, float) and not math.isfinite(number):
        return INT64_MIN
    if not INT64_MIN <= number < INT64_MAX + 1:
        return INT64_MIN
    return int(number)


def _error_message(raw: bytes) -> str:
    """redis-py drops the generic ``ERR`` code from an error reply; other codes stay."""
    return raw.decode(errors="replace").removeprefix("ERR ")


def _encode(value: Encodable) -> bytes:
    """An argument as redis-py encodes it."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        raise redis.DataError(
            "Invalid input of type: 'bool'. Convert to a bytes, string, int or float first."
        )
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, float):
        return repr(value).encode()
    raise redis.DataError(f"Invalid input of type: {type(value).__name__!r}")


def _before_fork(ref: weakref.ref[LocalRedis]) -> None:
    owner = ref()
    if owner is not None:
        owner._lock.acquire()


def _after_fork_in_parent(ref: weakref.ref[LocalRedis]) -> None:
    owner = ref()
    if owner is not None:
        owner._lock.release()


def _after_fork_in_child(ref: weakref.ref[LocalRedis]) -> None:
    owner = ref()
    if owner is not None:
        owner._lock = threading.Lock()
