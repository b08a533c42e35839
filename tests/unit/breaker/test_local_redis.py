"""Redis scripts run in process: Redis's conversions, the commands, atomicity, forks.

The expected values are Redis 7.0's answers (tests/integration/breaker/test_local_redis_vs_redis.py
asks the real server the same questions).
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import pytest
import redis
from breaker_helpers import FakeClock

from worker.breaker.local_redis import LocalRedis

INT64_MIN = -(2**63)


@pytest.fixture
def local(clock: FakeClock) -> LocalRedis:
    return LocalRedis(clock)


def run(local: LocalRedis, script: str, *keys_and_args: Any, keys: int = 0) -> Any:
    return local.eval(script, keys, *keys_and_args)


@pytest.mark.parametrize(
    ("lua", "reply"),
    [
        ("3.7", 3),
        ("-3.7", -3),
        ("1e20", INT64_MIN),
        ("0/0", INT64_MIN),
        ("true", 1),
        ("false", None),
        ("nil", None),
        ("'text'", b"text"),
        ("{1, 2, nil, 3}", [1, 2]),
        ("{1, {2, 'a'}, false, 4}", [1, [2, b"a"], None, 4]),
        ("{1, true, 2.5}", [1, 1, 2]),
        ("{a = 1}", []),
        ("{ok = 'fine'}", b"fine"),
        ("redis.status_reply('PONG')", b"PONG"),
        ("{double = 3.5}", 3.5),
    ],
)
def test_script_results_convert_as_redis_converts_them(local: LocalRedis, lua: str, reply: Any) -> None:
    assert run(local, f"return {lua}") == reply


@pytest.mark.parametrize(
    ("lua", "message"),
    [
        ("{err = 'boom'}", "boom"),
        ("{err = 'ERR generic'}", "generic"),
        ("redis.error_reply('my error')", "my error"),
        ("redis.error_reply('-CODE msg')", "CODE msg"),
    ],
)
def test_error_tables_are_error_replies(local: LocalRedis, lua: str, message: str) -> None:
    with pytest.raises(redis.ResponseError) as err:
        run(local, f"return {lua}")
    assert str(err.value) == message


def test_an_error_inside_an_array_is_an_element(local: LocalRedis) -> None:
    one, two, inner = run(local, "return {1, 2, {err = 'inner'}}")
    assert (one, two, type(inner), str(inner)) == (1, 2, redis.ResponseError, "inner")


@pytest.mark.parametrize(
    ("lua", "stored"),
    [
        ("3", b"3"),
        ("0.1", b"0.10000000000000001"),
        ("1e17", b"1e+17"),
        ("2^53 + 1", b"9007199254740992"),
        ("-0.0", b"-0"),
        ("1/0", b"inf"),
        ("-1/0", b"-inf"),
        ("1e-7", b"9.9999999999999995e-08"),
        ("'0.1'", b"0.1"),
    ],
)
def test_number_arguments_are_printed_with_17_digits(local: LocalRedis, lua: str, stored: bytes) -> None:
    assert (
        run(local, f"redis.call('SET', KEYS[1], {lua}) return redis.call('GET', KEYS[1])", "k", keys=1)
        == stored
    )


@pytest.mark.parametrize("arg", ["{}", "nil", "true"])
def test_other_arguments_are_refused(local: LocalRedis, arg: str) -> None:
    with pytest.raises(redis.ResponseError, match="must be strings or integers"):
        run(local, f"return redis.call('GET', {arg})")


def test_replies_reach_lua_as_redis_hands_them_over(local: LocalRedis) -> None:
    script = """
      local set = redis.call('SET', KEYS[1], 'v')
      local missing = redis.call('GET', KEYS[2])
      local fields = redis.call('HMGET', KEYS[2], 'a', 'b')
      local failed = redis.pcall('HINCRBY', KEYS[1], 'f', 1)
      return {type(set), set.ok, type(missing), tostring(missing), #fields, tostring(fields[1]),
        type(failed), failed.err}
    """
    assert run(local, script, "k", "absent", keys=2) == [
        b"table",
        b"OK",
        b"boolean",
        b"false",
        2,
        b"false",
        b"table",
        b"WRONGTYPE Operation against a key holding the wrong kind of value",
    ]


def test_unknown_commands_are_a_clear_error(local: LocalRedis) -> None:
    with pytest.raises(redis.ResponseError, match=r"'INCR' is not implemented by the local keyspace"):
        run(local, "return redis.call('INCR', 'k')")
    assert run(local, "return redis.pcall('INCR', 'k').err").startswith(b"ERR Unknown Redis command")
    with pytest.raises(redis.ResponseError, match="Wrong number of args"):
        run(local, "return redis.call('GET')")
    with pytest.raises(redis.ResponseError, match="at least one argument"):
        run(local, "return redis.call()")


def test_scripts_see_only_redis_globals(local: LocalRedis) -> None:
    with pytest.raises(redis.ResponseError, match="Attempt to modify a readonly table"):
        run(local, "x = 1")
    with pytest.raises(redis.ResponseError, match="nonexistent global variable 'os'"):
        run(local, "return os.time()")
    with pytest.raises(redis.ResponseError, match="user_script:1: boom"):
        run(local, "error('boom')")
    with pytest.raises(redis.ResponseError, match="Error compiling script"):
        run(local, "return (")


def test_keys_and_argv(local: LocalRedis) -> None:
    assert run(local, "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2], #ARGV}", "a", "b", 7, 1.5, keys=2) == [
        b"a",
        b"b",
        b"7",
        b"1.5",
        2,
    ]


def test_register_script_has_redis_sha(local: LocalRedis) -> None:
    script = local.register_script("return ARGV[1]")
    assert script.sha == hashlib.sha1(b"return ARGV[1]").hexdigest()
    assert script(keys=[], args=["x"]) == b"x"


def test_time_and_expiry_follow_the_injected_clock(local: LocalRedis, clock: FakeClock) -> None:
    clock.now = 1_700_000_000.25
    assert run(local, "return redis.call('TIME')") == [b"1700000000", b"250000"]
    script = "redis.call('SET', KEYS[1], 'v') redis.call('HSET', KEYS[2], 'f', 'v') "
    script += "return {redis.call('EXPIRE', KEYS[1], 10), redis.call('PEXPIRE', KEYS[2], 1500)}"
    assert run(local, script, "s", "h", keys=2) == [1, 1]
    exists = "return {redis.call('EXISTS', KEYS[1]), redis.call('EXISTS', KEYS[2])}"
    clock.advance(1.5)
    assert run(local, exists, "s", "h", keys=2) == [1, 1]  # exactly at the deadline: still there
    clock.advance(0.001)
    assert run(local, exists, "s", "h", keys=2) == [1, 0]
    clock.advance(9)
    assert run(local, exists, "s", "h", keys=2) == [0, 0]


def test_expire_options(local: LocalRedis) -> None:
    script = """
      redis.call('SET', KEYS[1], 'v')
      return {redis.call('EXPIRE', KEYS[1], 10, 'XX'), redis.call('EXPIRE', KEYS[1], 10, 'NX'),
        redis.call('EXPIRE', KEYS[1], 5, 'GT'), redis.call('EXPIRE', KEYS[1], 20, 'GT'),
        redis.call('EXPIRE', KEYS[1], 30, 'LT'), redis.call('EXPIRE', KEYS[1], 0),
        redis.call('EXISTS', KEYS[1]), redis.call('EXPIRE', KEYS[1], 5)}
    """
    assert run(local, script, "k", keys=1) == [0, 1, 0, 1, 0, 1, 0, 0]


def test_strings(local: LocalRedis) -> None:
    script = """
      return {redis.call('SET', KEYS[1], 'a', 'NX'), redis.call('SET', KEYS[1], 'b', 'NX'),
        redis.call('SET', KEYS[2], 'c', 'XX'), redis.call('SET', KEYS[1], 'd', 'GET'),
        redis.call('GET', KEYS[1]), redis.call('EXISTS', KEYS[1], KEYS[1], KEYS[2]),
        redis.call('DEL', KEYS[1], KEYS[2])}
    """
    assert run(local, script, "k", "other", keys=2) == [b"OK", None, None, b"a", b"d", 2, 1]


def test_set_with_expiry_and_keepttl(local: LocalRedis, clock: FakeClock) -> None:
    run(
        local,
        "redis.call('SET', KEYS[1], 'a', 'PX', 1000) redis.call('SET', KEYS[1], 'b', 'KEEPTTL')",
        "k",
        keys=1,
    )
    run(local, "redis.call('SET', KEYS[1], 'a', 'EX', 1)", "j", keys=1)
    clock.advance(1.001)
    assert run(
        local, "return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}", "k", "j", keys=2
    ) == [
        None,
        None,
    ]
    with pytest.raises(redis.ResponseError, match="invalid expire time"):
        run(local, "redis.call('SET', 'k', 'v', 'EX', 0)")
    with pytest.raises(redis.ResponseError, match="syntax error"):
        run(local, "redis.call('SET', 'k', 'v', 'NOPE')")


def test_hashes(local: LocalRedis) -> None:
    script = """
      return {redis.call('HSET', KEYS[1], 'a', 1, 'b', 2), redis.call('HSET', KEYS[1], 'a', 3, 'c', 4),
        redis.call('HGET', KEYS[1], 'a'), redis.call('HMGET', KEYS[1], 'b', 'x'),
        redis.call('HINCRBY', KEYS[1], 'n', 5), redis.call('HINCRBY', KEYS[1], 'n', -7),
        redis.call('HDEL', KEYS[1], 'b', 'x'), redis.call('HGETALL', KEYS[1])}
    """
    assert run(local, script, "h", keys=1) == [
        2,
        1,
        b"3",
        [b"2", None],
        5,
        -2,
        1,
        [b"a", b"3", b"c", b"4", b"n", b"-2"],
    ]
    assert (
        run(
            local,
            "redis.call('HDEL', KEYS[1], 'a', 'c', 'n') return redis.call('EXISTS', KEYS[1])",
            "h",
            keys=1,
        )
        == 0
    )


@pytest.mark.parametrize(
    ("start", "by", "result"),
    [
        ("1.5", "0.1", b"1.6"),
        ("1.5", 0.1, b"1.60000000000000001"),
        ("10", "-3.3", b"6.7"),
        ("0", "1e3", b"1000"),
    ],
)
def test_hincrbyfloat_computes_in_long_double(local: LocalRedis, start: str, by: Any, result: bytes) -> None:
    script = (
        "redis.call('HSET', KEYS[1], 'f', ARGV[1]) return redis.call('HINCRBYFLOAT', KEYS[1], 'f', ARGV[2])"
    )
    if isinstance(by, float):  # a Lua number: 17 digits reach Redis
        script = script.replace("ARGV[2]", repr(by))
    assert run(local, script, "h", start, by, keys=1) == result


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (
            "redis.call('HSET', 'h', 'f', 'x') return redis.call('HINCRBY', 'h', 'f', 1)",
            "hash value is not an integer",
        ),
        ("return redis.call('HINCRBY', 'h', 'f', 1.5)", "value is not an integer or out of range"),
        ("return redis.call('HINCRBY', 'h', 'f', '-0')", "value is not an integer or out of range"),
        (
            "redis.call('HSET', 'h', 'f', '9223372036854775807') return redis.call('HINCRBY', 'h', 'f', 1)",
            "overflow",
        ),
        ("return redis.call('HINCRBYFLOAT', 'h', 'f', 'abc')", "value is not a valid float"),
        ("return redis.call('HSET', 'h', 'f')", "Wrong number of args"),
        ("return redis.call('HSET', 'h', 'f', 'v', 'g')", "wrong number of arguments for 'hset'"),
        ("redis.call('SET', 'h', 'v') return redis.call('HGET', 'h', 'f')", "WRONGTYPE"),
        ("redis.call('HSET', 'h', 'f', 'v') return redis.call('GET', 'h')", "WRONGTYPE"),
        ("return redis.call('ZADD', 'z', 'nan', 'm')", "value is not a valid float"),
        ("return redis.call('ZADD', 'z', 'NX', 'XX', 1, 'm')", "not compatible"),
        ("return redis.call('ZREMRANGEBYSCORE', 'z', 'x', 1)", "min or max is not a float"),
    ],
)
def test_command_errors(local: LocalRedis, script: str, message: str) -> None:
    with pytest.raises(redis.ResponseError, match=message):
        run(local, script)


def test_sorted_sets(local: LocalRedis) -> None:
    script = """
      return {redis.call('ZADD', KEYS[1], 2, 'b', 1, 'a', '3.5', 'c'),
        redis.call('ZADD', KEYS[1], 'NX', 9, 'a'),
        redis.call('ZADD', KEYS[1], 'XX', 'CH', 0, 'a', 7, 'd'), redis.call('ZCARD', KEYS[1]),
        redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES'), redis.call('ZRANGE', KEYS[1], -2, 100),
        redis.call('ZRANGE', KEYS[1], 2, 1), redis.call('ZREM', KEYS[1], 'b', 'x'),
        redis.call('ZADD', KEYS[1], '-inf', 'low', 0.1, 'tenth'),
        redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES'), redis.call('ZRANGE', KEYS[1], 2, 2, 'WITHSCORES'),
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '(0', 'inf'), redis.call('ZRANGE', KEYS[1], 0, -1)}
    """
    assert run(local, script, "z", keys=1) == [
        3,
        0,
        1,
        3,
        [b"a", b"0", b"b", b"2", b"c", b"3.5"],
        [b"b", b"c"],
        [],
        1,
        2,
        [b"low", b"-inf"],
        [b"tenth", b"0.10000000000000001"],
        2,
        [b"low", b"a"],
    ]


def test_runtime_is_created_on_first_run(local: LocalRedis) -> None:
    assert local._host is None
    run(local, "return 1")
    assert local._host is not None


def test_a_script_run_is_atomic_across_threads(local: LocalRedis) -> None:
    # Read, then write what was read plus one: lost updates would show if two runs interleaved.
    bump = local.register_script(
        "local n = tonumber(redis.call('GET', KEYS[1]) or '0') redis.call('SET', KEYS[1], n + 1)"
    )
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(200):
            bump(keys=["n"], args=[])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert run(local, "return redis.call('GET', 'n')") == b"1600"


def test_a_forked_child_gets_a_consistent_copy_and_its_own_lock(local: LocalRedis) -> None:
    bump = local.register_script("redis.call('HINCRBY', 'h', 'a', 1) redis.call('HINCRBY', 'h', 'b', 1)")
    stop = threading.Event()

    def busy() -> None:  # scripts run in another thread while the fork happens
        while not stop.is_set():
            bump(keys=[], args=[])

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        pid = os.fork()
        if pid == 0:
            try:
                a, b = run(local, "return redis.call('HMGET', 'h', 'a', 'b')")
                run(local, "redis.call('SET', 'child', 1)")
                os._exit(0 if a == b else 1)
            finally:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
    finally:
        stop.set()
        thread.join()
    assert os.waitstatus_to_exitcode(status) == 0
    assert run(local, "return redis.call('EXISTS', 'child')") == 0  # the child's writes stay in the child
