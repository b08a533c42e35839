"""The same scripts on the real Redis and in process (LocalRedis): the same replies and errors."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from worker.breaker.local_redis import LocalRedis

pytestmark = pytest.mark.integration

# Each runs with KEYS 1..3 (the test's own keys) and no ARGV; keys are emptied between scripts.
SCRIPTS = [
    *(
        f"redis.call('SET', KEYS[1], {number}) return redis.call('GET', KEYS[1])"
        for number in (
            "0.1",
            "1e17",
            "3",
            "'0.1'",
            "-0.0",
            "1/0",
            "-1/0",
            "0/0",
            "2^53+1",
            "1e-7",
            "1e20",
            "-7.25",
        )
    ),
    *(
        f"return {value}"
        for value in (
            "3.7",
            "-3.7",
            "true",
            "false",
            "nil",
            "{1,2,nil,3}",
            "{err='boom'}",
            "{err='-X boom'}",
            "{err='ERR generic'}",
            "{ok='fine'}",
            "{1,{2,'a'},false,4}",
            "redis.error_reply('my error')",
            "redis.error_reply('-CODE msg')",
            "redis.status_reply('PONG')",
            "{}",
            "{a=1}",
            "1e20",
            "-1e20",
            "0/0",
            "1/0",
            "{1, true, 2.5}",
            "{double=3.5}",
            "'text'",
            "2^63",
            "-2^63",
            "{1, 2, {err='inner'}}",
        )
    ),
    "return redis.call('GET', {})",
    "return redis.call('GET', nil)",
    "return redis.call('GET')",
    "x = 1",
    "return undefined_global",
    "error('boom')",
    "error({err='tbl'})",
    "local ok, e = pcall(redis.call, 'HINCRBY', KEYS[1], 'f', 1.5) return {tostring(ok), e}",
    "return redis.pcall('HINCRBY', KEYS[1])",
    "local r = redis.call('SET', KEYS[1], 1) return {type(r), r.ok}",
    "return {type(redis.call('GET', KEYS[1])), redis.call('HMGET', KEYS[1], 'a', 'b')}",
    "redis.call('SET', KEYS[1], 'v') return redis.pcall('HGET', KEYS[1], 'f')",
    "redis.call('HSET', KEYS[1], 'f', 'v') return redis.pcall('GET', KEYS[1])",
    # strings and keys
    """return {redis.call('SET', KEYS[1], 'a', 'NX'), redis.call('SET', KEYS[1], 'b', 'NX'),
      redis.call('SET', KEYS[2], 'c', 'XX'), redis.call('SET', KEYS[1], 'd', 'GET'),
      redis.call('GET', KEYS[1]),
      redis.call('EXISTS', KEYS[1], KEYS[1], KEYS[2]), redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])}""",
    "return redis.pcall('SET', KEYS[1], 'v', 'EX', 0)",
    "return redis.pcall('SET', KEYS[1], 'v', 'NOPE')",
    """redis.call('SET', KEYS[1], 'v')
    return {redis.call('EXPIRE', KEYS[1], 10, 'XX'), redis.call('EXPIRE', KEYS[1], 10, 'NX'),
      redis.call('EXPIRE', KEYS[1], 5, 'GT'), redis.call('EXPIRE', KEYS[1], 20, 'GT'),
      redis.call('EXPIRE', KEYS[1], 30, 'LT'), redis.call('PEXPIRE', KEYS[1], 0),
      redis.call('EXISTS', KEYS[1]),
      redis.call('EXPIRE', KEYS[1], 5)}""",
    "return redis.pcall('EXPIRE', KEYS[1], 10, 'NX', 'XX')",
    "return redis.pcall('EXPIRE', KEYS[1], 'soon')",
    # hashes
    """return {redis.call('HSET', KEYS[1], 'a', 1, 'b', 2.5), redis.call('HSET', KEYS[1], 'a', 3, 'c', 4),
      redis.call('HGET', KEYS[1], 'a'), redis.call('HMGET', KEYS[1], 'b', 'x'),
      redis.call('HINCRBY', KEYS[1], 'n', 5), redis.call('HINCRBY', KEYS[1], 'n', -7),
      redis.call('HDEL', KEYS[1], 'b', 'x'), redis.call('HGETALL', KEYS[1]),
      redis.call('HDEL', KEYS[1], 'a', 'c', 'n'), redis.call('EXISTS', KEYS[1])}""",
    "redis.call('HSET', KEYS[1], 'f', 'x') return redis.pcall('HINCRBY', KEYS[1], 'f', 1)",
    "redis.call('HSET', KEYS[1], 'f', '9223372036854775807') return redis.pcall('HINCRBY', KEYS[1], 'f', 1)",
    """return {redis.pcall('HINCRBY', KEYS[1], 'f', '-0'), redis.pcall('HINCRBY', KEYS[1], 'f', '01'),
      redis.pcall('HINCRBY', KEYS[1], 'f', ' 1'), redis.pcall('HINCRBY', KEYS[1], 'f', '+1')}""",
    "return redis.pcall('HSET', KEYS[1], 'f', 'v', 'g')",
    *(
        f"redis.call('HSET', KEYS[1], 'f', '{start}')\nreturn redis.pcall('HINCRBYFLOAT', KEYS[1], 'f', {by})"
        for start, by in (
            ("1.5", "'0.1'"),
            ("1.5", "0.1"),
            ("10", "'-3.3'"),
            ("0", "'1e3'"),
            ("0.1", "'0.2'"),
            ("5", "'-5'"),
            ("1", "'1e400'"),
            ("x", "'1'"),
            ("1", "'abc'"),
            ("1", "'inf'"),
            ("1", "1/3"),
            ("123456789.123456789", "'0.000000001'"),
            ("-0.5", "'0.25'"),
            ("inf", "'1'"),
            ("1e4932", "'1e4932'"),
            ("1", "'1e5000'"),
        )
    ),
    # sorted sets
    """return {redis.call('ZADD', KEYS[1], 2, 'b', 1, 'a', '3.5', 'c'),
      redis.call('ZADD', KEYS[1], 'NX', 9, 'a'),
      redis.call('ZADD', KEYS[1], 'XX', 'CH', 0, 'a', 7, 'd'), redis.call('ZCARD', KEYS[1]),
      redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES'), redis.call('ZRANGE', KEYS[1], -2, 100),
      redis.call('ZRANGE', KEYS[1], 2, 1), redis.call('ZREM', KEYS[1], 'b', 'x'),
      redis.call('ZADD', KEYS[1], '-inf', 'low', 0.1, 'tenth', 1e17, 'big', '+inf', 'high'),
      redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES'),
      redis.call('ZREMRANGEBYSCORE', KEYS[1], '(0', '(inf'),
      redis.call('ZRANGE', KEYS[1], 0, -1), redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '+inf'),
      redis.call('EXISTS', KEYS[1])}""",
    "return {redis.call('ZADD', KEYS[1], 1, 'b', 1, 'a', 1, 'c'), redis.call('ZRANGE', KEYS[1], 0, -1)}",
    "return redis.pcall('ZADD', KEYS[1], 'nan', 'm')",
    "return redis.pcall('ZADD', KEYS[1], 'NX', 'XX', 1, 'm')",
    "return redis.pcall('ZADD', KEYS[1], 1)",
    "return redis.pcall('ZREMRANGEBYSCORE', KEYS[1], 'x', 1)",
    """return {redis.call('ZREM', KEYS[1], 'x'), redis.call('ZCARD', KEYS[1]),
      redis.call('ZRANGE', KEYS[1], 0, -1)}""",
]


def comparable(reply: Any) -> Any:
    if isinstance(reply, redis.ResponseError):
        # Redis appends where the script failed; the error itself is what must agree.
        return ("error", str(reply).split(" script: ")[0])
    if isinstance(reply, list):
        return [comparable(item) for item in reply]
    return reply


def outcome(host: Any, script: str, keys: list[str]) -> Any:
    try:
        return comparable(host.register_script(script)(keys=keys, args=[]))
    except redis.ResponseError as exc:
        return comparable(exc)


@pytest.mark.parametrize("script", SCRIPTS)
def test_same_reply_on_both_hosts(redis_client: redis.Redis, key_prefix: str, script: str) -> None:
    keys = [f"{key_prefix}:{n}" for n in range(3)]
    local = LocalRedis(clock=time.time)
    try:
        assert outcome(local, script, keys) == outcome(redis_client, script, keys)
    finally:
        redis_client.delete(*keys)


def test_time_is_the_hosts_clock(redis_client: redis.Redis) -> None:
    local = LocalRedis(clock=time.time)
    sec, usec = (int(x) for x in local.register_script("return redis.call('TIME')")(keys=[], args=[]))
    real_sec, real_usec = (
        int(x) for x in redis_client.register_script("return redis.call('TIME')")(keys=[], args=[])
    )
    assert abs((sec + usec / 1e6) - (real_sec + real_usec / 1e6)) < 5
