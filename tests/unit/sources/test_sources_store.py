"""The sources repository on SQLite: sealed rows, validation, stamps that move only on change, apply."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable

import pytest
from pydantic import SecretStr
from source_samples import KEY_A, KEY_B, SHOP_KEY, SHOP_SECRET, shop
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import ReconcileSeenId, Source, SyncState
from worker.sources import store
from worker.sources.config import SourceConfig
from worker.sources.secrets import CredentialCipher, SourceKeyError

ODOO_KEY = "odoo-api-key-0123456789abcdef"


def odoo(name: str = "erp-main", **changes: object) -> SourceConfig:
    values: dict[str, object] = {
        "name": name,
        "kind": "odoo",
        "url": "https://erp.shops.test",
        "options": {"db": "main", "username": "sync"},
        "credentials": {"api_key": ODOO_KEY},
    }
    return SourceConfig.model_validate({**values, **changes})


def ticking() -> Callable[[], dt.datetime]:
    """A clock that moves one minute per reading, so any re-stamp shows."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    counter = itertools.count()
    return lambda: start + dt.timedelta(minutes=next(counter))


def stamps(session: Session) -> dict[str, dt.datetime]:
    return {r.name: r.updated_at for r in session.scalars(select(Source))}


def test_add_then_get_and_list_give_the_source_back_with_sealed_storage(
    session: Session, cipher: CredentialCipher
) -> None:
    store.add(session, shop("shop-us"), cipher)
    store.add(session, odoo(), cipher)
    overridden = shop("shop-eu", concurrency=2, breaker={"failure_threshold": 3}, budget={"ceiling": 10})
    store.add(session, overridden, cipher)
    assert store.get(session, "shop-us", cipher) == shop("shop-us")
    assert store.get(session, "shop-eu", cipher) == overridden
    assert store.get(session, "missing", cipher) is None
    assert [s.name for s in store.list_all(session, cipher)] == ["erp-main", "shop-eu", "shop-us"]
    raw = [r.credentials for r in session.scalars(select(Source))]
    assert all(SHOP_SECRET not in t and SHOP_KEY not in t and ODOO_KEY not in t for t in raw)


def test_add_refuses_a_taken_name(session: Session, cipher: CredentialCipher) -> None:
    store.add(session, shop(), cipher)
    with pytest.raises(store.SourceExists, match="'shop-eu' already exists"):
        store.add(session, shop(url="https://other.shops.test"), cipher)


def test_add_lists_every_problem_of_the_source_at_once(session: Session, cipher: CredentialCipher) -> None:
    bad = odoo(
        options={"db": "main", "protocol": "soap"},
        credentials={"api_key": ODOO_KEY, "password": "hunter2-secret"},
        url="ftp://erp.shops.test",
        breaker={"failure_threshold": 0, "flavour": "x"},
        budget={"ceiling": -1, "pace": 3},
        full_cron="every night",
    )
    with pytest.raises(store.InvalidSource) as info:
        store.add(session, bad, cipher)
    text = str(info.value)
    for expected in (
        "option 'username' is missing",
        "option 'protocol' must be one of",
        "credential 'password'",
        "url: must be an http",
        "breaker.flavour: not a breaker setting",
        "breaker.failure_threshold",
        "budget.pace: not a request budget setting",
        "budget.ceiling: Input should be greater than or equal to 0",
        "full_cron",
    ):
        assert expected in text
    assert "hunter2-secret" not in text and ODOO_KEY not in text
    assert store.list_all(session, cipher) == []


def test_add_refuses_an_unknown_kind(session: Session, cipher: CredentialCipher) -> None:
    with pytest.raises(store.InvalidSource, match="unknown source kind 'shopify'"):
        store.add(session, shop(kind="shopify"), cipher)


def test_update_changes_only_what_is_given_and_replaces_credentials_per_field(
    session: Session, cipher: CredentialCipher
) -> None:
    clock = ticking()
    store.add(session, shop(), cipher, now=clock)
    before = stamps(session)["shop-eu"]
    same = store.update(session, "shop-eu", {"url": "https://shop-eu.shops.test"}, cipher, now=clock)
    assert same == shop() and stamps(session)["shop-eu"] == before
    changed = store.update(
        session,
        "shop-eu",
        {"concurrency": 3, "credentials": {"consumer_secret": SecretStr("cs_new-0123456789")}},
        cipher,
        now=clock,
    )
    assert changed.concurrency == 3 and changed.secret("consumer_key") == SHOP_KEY
    assert store.get(session, "shop-eu", cipher) == changed
    assert changed.secret("consumer_secret") == "cs_new-0123456789"
    assert stamps(session)["shop-eu"] > before


def test_update_refuses_a_rename_a_missing_source_and_an_invalid_change(
    session: Session, cipher: CredentialCipher
) -> None:
    store.add(session, shop(), cipher)
    with pytest.raises(store.SourceStoreError, match="name of a source cannot be changed"):
        store.update(session, "shop-eu", {"name": "shop-us"}, cipher)
    with pytest.raises(store.SourceNotFound):
        store.update(session, "shop-us", {"page_size": 3}, cipher)
    with pytest.raises(store.InvalidSource, match="concurrency"):
        store.update(session, "shop-eu", {"concurrency": 0}, cipher)
    with pytest.raises(store.InvalidSource, match="page_size: WooCommerce sources do not use it"):
        store.update(session, "shop-eu", {"page_size": 50}, cipher)  # pages are always 100 records there
    with pytest.raises(store.SourceStoreError, match="kind of a source cannot be changed"):
        store.update(session, "shop-eu", {"kind": "odoo"}, cipher)  # its rows and bookmarks are WooCommerce's
    with pytest.raises(store.InvalidSource, match="must not have a query"):
        store.update(session, "shop-eu", {"url": "https://shop-eu.shops.test/?consumer_key=ck_x"}, cipher)
    with pytest.raises(store.InvalidSource, match="option 'auth' must be one of"):
        store.update(session, "shop-eu", {"options": {"auth": "digest"}}, cipher)
    assert store.get(session, "shop-eu", cipher) == shop()


def test_a_budget_override_is_stored_changed_and_judged_like_the_breaker_ones(
    session: Session, cipher: CredentialCipher
) -> None:
    store.add(session, shop(budget={"ceiling": 10}), cipher)
    changed = store.update(session, "shop-eu", {"budget": {"ceiling": 4, "burst": 2}}, cipher)
    assert store.get(session, "shop-eu", cipher) == changed
    assert changed.budget == {"ceiling": 4, "burst": 2}
    assert session.scalars(select(Source.budget)).one() == {"ceiling": 4, "burst": 2}
    for bad, expected in (
        ({"decrease": 1.5}, "budget.decrease: Input should be less than 1"),
        ({"burst": "many"}, "budget.burst: Input should be a valid integer"),
        ({"ceiling": 2, "floor": 3}, "budget.floor: must not exceed budget.ceiling"),
        ({"rate": 5}, "budget.rate: not a request budget setting"),
    ):
        with pytest.raises(store.InvalidSource, match=expected):
            store.update(session, "shop-eu", {"budget": bad}, cipher)
    # A floor above the kind's ceiling is only known with the fleet's settings; a ceiling of 0 turns it off.
    assert store.update(session, "shop-eu", {"budget": {"ceiling": 0}}, cipher).budget == {"ceiling": 0}
    assert store.update(session, "shop-eu", {"budget": {"floor": 0.2}}, cipher).budget == {"floor": 0.2}


def test_set_enabled_reports_a_change_and_stamps_only_then(
    session: Session, cipher: CredentialCipher
) -> None:
    clock = ticking()
    store.add(session, shop(), cipher, now=clock)
    first = stamps(session)["shop-eu"]
    assert store.set_enabled(session, "shop-eu", True, now=clock) is False
    assert stamps(session)["shop-eu"] == first
    assert store.set_enabled(session, "shop-eu", False, now=clock) is True
    assert store.get(session, "shop-eu", cipher).enabled is False  # type: ignore[union-attr]
    assert stamps(session)["shop-eu"] > first
    with pytest.raises(store.SourceNotFound):
        store.set_enabled(session, "nope", False)


def test_remove_forgets_the_source(session: Session, cipher: CredentialCipher) -> None:
    store.add(session, shop(), cipher)
    store.remove(session, "shop-eu")
    assert store.get(session, "shop-eu", cipher) is None
    with pytest.raises(store.SourceNotFound):
        store.remove(session, "shop-eu")


def test_rotate_all_reencrypts_every_row_in_batches_under_the_newest_key(session: Session) -> None:
    old = CredentialCipher([KEY_A])
    names = [f"shop-{i}" for i in range(5)]
    for name in names:
        store.add(session, shop(name), old)
    assert store.rotate_all(session, CredentialCipher([KEY_B, KEY_A]), batch_size=2) == 5
    newest = CredentialCipher([KEY_B])
    assert [s.name for s in store.list_all(session, newest)] == names
    assert all(s.secret("consumer_secret") == SHOP_SECRET for s in store.list_all(session, newest))


def test_rotate_all_stops_on_a_row_no_key_opens(session: Session) -> None:
    store.add(session, shop(), CredentialCipher([KEY_A]))
    with pytest.raises(SourceKeyError, match="'shop-eu'"):
        store.rotate_all(session, CredentialCipher([KEY_B]))


def test_apply_twice_changes_nothing_the_second_time(session: Session, cipher: CredentialCipher) -> None:
    clock = ticking()
    declared = [shop("shop-us"), odoo(), shop("shop-eu", enabled=False)]
    first = store.apply(session, declared, cipher, prune=False, now=clock)
    assert first.as_dict() == {
        "created": ["erp-main", "shop-eu", "shop-us"],
        "updated": [],
        "unchanged": [],
        "removed": [],
    }
    before = stamps(session)
    tokens = {r.name: r.credentials for r in session.scalars(select(Source))}
    # Equal but freshly built: new SecretStr objects, the same values.
    again = store.apply(
        session, [shop("shop-us"), odoo(), shop("shop-eu", enabled=False)], cipher, prune=False, now=clock
    )
    assert again.as_dict() == {
        "created": [],
        "updated": [],
        "unchanged": ["erp-main", "shop-eu", "shop-us"],
        "removed": [],
    }
    assert not again.changed
    assert stamps(session) == before
    assert {r.name: r.credentials for r in session.scalars(select(Source))} == tokens


def test_apply_updates_a_changed_credential_and_prunes_only_when_asked(
    session: Session, cipher: CredentialCipher
) -> None:
    store.apply(session, [shop("shop-us"), shop("shop-eu"), odoo()], cipher, prune=False)
    rekeyed = shop("shop-us", credentials={"consumer_key": SHOP_KEY, "consumer_secret": "cs_rotated-0123456"})
    kept = store.apply(session, [rekeyed], cipher, prune=False)
    assert kept.as_dict() == {"created": [], "updated": ["shop-us"], "unchanged": [], "removed": []}
    assert [s.name for s in store.list_all(session, cipher)] == ["erp-main", "shop-eu", "shop-us"]
    pruned = store.apply(session, [rekeyed], cipher, prune=True)
    assert pruned.as_dict() == {
        "created": [],
        "updated": [],
        "unchanged": ["shop-us"],
        "removed": ["erp-main", "shop-eu"],
    }
    assert store.get(session, "shop-us", cipher).secret("consumer_secret") == "cs_rotated-0123456"  # type: ignore[union-attr]


def test_apply_refuses_duplicates_and_invalid_sources_before_changing_anything(
    session: Session, cipher: CredentialCipher
) -> None:
    with pytest.raises(store.InvalidSource, match="'shop-eu': declared more than once"):
        store.apply(session, [shop(), shop()], cipher, prune=True)
    with pytest.raises(store.InvalidSource) as info:
        store.apply(session, [shop("a-shop", options={"auth": "x"}), odoo(options={})], cipher, prune=False)
    assert "'a-shop'" in str(info.value) and "'erp-main'" in str(info.value)
    with pytest.raises(store.InvalidSource, match="configured from the environment"):
        store.apply(session, [shop(from_environment=True)], cipher, prune=False)
    assert store.list_all(session, cipher) == []


def test_plain_http_to_a_remote_host_is_refused_unless_allowed(
    session: Session, cipher: CredentialCipher
) -> None:
    # Its credentials would cross the network in clear text.
    remote = shop("shop-plain", url="http://shop-plain.shops.test")
    with pytest.raises(store.InvalidSource, match=r"plain http to shop-plain\.shops\.test"):
        store.add(session, remote, cipher)
    store.add(session, shop("shop-local", url="http://127.0.0.1:8080"), cipher)  # a simulator, a tunnel
    store.add(session, remote, cipher, allow_insecure_http=True)  # ALLOW_INSECURE_HTTP=true
    assert store.get(session, "shop-plain", cipher) is not None


def test_a_name_removed_and_added_again_starts_from_the_beginning(
    session: Session, cipher: CredentialCipher
) -> None:
    # Another shop under a freed name must not inherit the old one's watermark or checkpoints.
    store.add(session, shop(), cipher)
    session.add(
        SyncState(source="shop-eu", watermark=dt.datetime(2026, 11, 30, tzinfo=dt.UTC), checkpoint={})
    )
    session.add(ReconcileSeenId(source="shop-eu", id=7))
    session.add(SyncState(source="shop-us", checkpoint={}))
    session.flush()
    store.remove(session, "shop-eu")
    assert session.scalars(select(SyncState.source)).all() == ["shop-us"]
    assert session.scalars(select(ReconcileSeenId.source)).all() == []


def test_apply_refuses_to_change_a_sources_kind(session: Session, cipher: CredentialCipher) -> None:
    store.add(session, shop("erp-main"), cipher)
    with pytest.raises(store.InvalidSource, match="its kind cannot change"):
        store.apply(session, [odoo("erp-main")], cipher, prune=False)
    assert store.get(session, "erp-main", cipher) == shop("erp-main")


def test_two_adds_of_one_name_racing_end_in_a_clear_refusal(
    session: Session, cipher: CredentialCipher, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.add(session, shop(), cipher)
    # The second `add` checked before the first committed: its insert meets the unique name.
    monkeypatch.setattr(store, "_row", lambda *_: None)
    with pytest.raises(store.SourceExists, match="already exists"):
        store.add(session, shop(url="https://other.shops.test"), cipher)
    monkeypatch.undo()
    assert store.get(session, "shop-eu", cipher) == shop()  # the first one stands, the session usable
