"""A realistic store for the benchmark, generated quickly.

At scale 1: 1k Business Centers, 100k accounts, 1M audiences, 2M shares, 500k ad groups
with their targeting rows. The tables come from the service's own Peewee models; rows are
written with ``executemany`` in large batches inside one transaction, and the secondary
indexes are built once at the end (much faster than maintaining them row by row).

The data is deterministic for a seed, and shaped like the real thing: most accounts belong
to a Business Center and accepted the terms, a tenth of the audiences are lookalikes of a
custom audience, a few are deleted, shares mostly go to accounts of the owner's Business
Center, and ad groups target audiences their account owns or received.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

import peewee as pw

from audience_authz.store import migrations
from audience_authz.store.models import TABLES, database

FULL = {"business_centers": 1_000, "accounts": 100_000, "audiences": 1_000_000,
        "shares": 2_000_000, "ad_groups": 500_000}
STAMP = "2024-01-01 00:00:00"
SOURCES = ["engagement", "app_activity", "website_traffic", "customer_file", "partner"]
UNSHAREABLE = ["lead_generation", "shop_activity"]
BATCH = 50_000
STORE_FORMAT = 1  # bump when the generated data changes, so a kept store is rebuilt


@dataclass(frozen=True)
class Sizes:
    business_centers: int
    accounts: int
    audiences: int
    shares: int
    ad_groups: int

    @classmethod
    def scaled(cls, scale: float) -> Sizes:
        return cls(**{k: max(1, int(round(v * scale))) for k, v in FULL.items()})


def bc_id(i: int) -> str:
    return f"bc_{i}"


def account_id(i: int) -> str:
    return f"acc_{i}"


def audience_id(j: int) -> str:
    return f"aud_{j}"


def ad_group_id(k: int) -> str:
    return f"ag_{k}"


def account_bc(i: int, sizes: Sizes) -> int | None:
    """Accounts i, i + n_bc, i + 2 n_bc, ... share a Business Center; every 20th has none."""
    return None if i % 20 == 19 else i % sizes.business_centers


def _progress(total: int, label: str, enabled: bool):
    if not enabled:
        class _Quiet:
            def update(self, n):
                pass

            def close(self):
                pass
        return _Quiet()
    from tqdm import tqdm
    return tqdm(total=total, desc=label, unit="row", unit_scale=True, mininterval=0.5)


def store_meta(path: Path) -> dict | None:
    """What a store file holds (sizes, seed, format), or None when it is not a complete store."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM bench_meta WHERE key = 'meta'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    if row is None:
        return None
    import json
    return json.loads(row[0])


def build(path: Path, sizes: Sizes, seed: int = 42, progress: bool = True) -> dict:
    """Write a fresh store at ``path`` (SQLite) and return its meta."""
    import json

    path = Path(path)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    # journal off and no fsync while building: the file is either complete (meta row
    # written last) or rebuilt.
    db = pw.SqliteDatabase(str(path), pragmas={"journal_mode": "off", "synchronous": "off",
                                               "cache_size": -262144, "temp_store": "memory"})
    database.initialize(db)
    db.connect()
    try:
        for model in TABLES:
            model._schema.create_table(safe=False)
        db.execute_sql("CREATE TABLE bench_meta (key TEXT PRIMARY KEY, value TEXT)")
        total = sizes.business_centers + sizes.accounts + sizes.audiences + sizes.shares + 3 * sizes.ad_groups
        bar = _progress(total, "building store", progress)
        with db.atomic():
            _fill(db.connection(), sizes, random.Random(seed), bar)
        bar.close()
        for model in TABLES:  # secondary indexes, built once over the full tables
            model._schema.create_indexes(safe=False)
        db.execute_sql("ANALYZE")
        migrations.runner(db).fake()  # the schema of this release: every migration applied
        meta = {"format": STORE_FORMAT, "seed": seed, "sizes": asdict(sizes)}
        db.execute_sql("INSERT INTO bench_meta VALUES ('meta', ?)", [json.dumps(meta)])
        db.execute_sql("PRAGMA journal_mode = wal")
    finally:
        db.close()
    return meta


def _batched(conn, sql: str, rows, bar):
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            conn.executemany(sql, batch)
            bar.update(len(batch))
            batch.clear()
    if batch:
        conn.executemany(sql, batch)
        bar.update(len(batch))


def _fill(conn, sizes: Sizes, rng: random.Random, bar) -> None:
    n_bc, n_acc, n_aud = sizes.business_centers, sizes.accounts, sizes.audiences
    per_bc = max(1, n_acc // n_bc)

    _batched(conn, "INSERT INTO business_center (id, name, cross_bc_allowlisted) VALUES (?, ?, ?)",
             ((bc_id(i), f"Business Center {i}", i % 10 == 0) for i in range(n_bc)), bar)

    def accounts():
        for i in range(n_acc):
            bc = account_bc(i, sizes)
            yield (account_id(i), f"Account {i}", None if bc is None else bc_id(bc),
                   None if i % 5 == 4 else STAMP)
    _batched(conn, "INSERT INTO account (id, name, business_center_id, terms_accepted_at)"
                   " VALUES (?, ?, ?, ?)", accounts(), bar)

    owners = [0] * n_aud
    first_owned: dict[int, int] = {}

    def audiences():
        rand, randrange = rng.random, rng.randrange
        for j in range(n_aud):
            owner = randrange(n_acc)
            owners[j] = owner
            first_owned.setdefault(owner, j)
            if j % 10 == 9:  # a lookalike of the custom audience just before it
                kind, source, seed = "lookalike", "", audience_id(j - 1)
            else:
                kind, seed = "custom", None
                source = UNSHAREABLE[j % 2] if rand() < 0.05 else SOURCES[j % 5]
            status = "deleted" if rand() < 0.03 else "active"
            yield (audience_id(j), account_id(owner), f"Audience {j}", kind, source, seed, status,
                   1000 + j % 100_000, 1, STAMP, STAMP, STAMP if status == "deleted" else None)
    _batched(conn, "INSERT INTO audience (id, owner_account_id, name, type, source, seed_audience_id,"
                   " status, member_count, revision, created_at, updated_at, deleted_at)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", audiences(), bar)

    # shares: per audience, recipients of the owner's Business Center (a tenth elsewhere)
    share_aud: list[int] = []
    share_rec: list[int] = []

    def shares():
        rand, randrange = rng.random, rng.randrange
        per_audience, extra = divmod(sizes.shares, n_aud)
        for j in range(n_aud):
            owner = owners[j]
            taken = {owner}
            for _ in range(per_audience + (1 if j < extra else 0)):
                for _attempt in range(8):
                    if rand() < 0.9 and per_bc > 1:
                        rec = (owner + n_bc * randrange(1, per_bc)) % n_acc
                    else:
                        rec = randrange(n_acc)
                    if rec not in taken:
                        break
                else:
                    continue
                taken.add(rec)
                active = rand() < 0.9
                if active:
                    share_aud.append(j)
                    share_rec.append(rec)
                yield (audience_id(j), account_id(rec), "active" if active else "stopped", STAMP,
                       account_id(owner), None if active else STAMP,
                       None if active else account_id(owner), None if active else "stop")
    _batched(conn, "INSERT INTO audience_share (audience_id, recipient_account_id, status, created_at,"
                   " created_by, stopped_at, stopped_by, stop_action) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
             shares(), bar)

    # ad groups: 60% of a recipient targeting what it received, 40% of an owner
    targeting: list[tuple] = []

    def ad_groups():
        rand, randrange = rng.random, rng.randrange
        for k in range(sizes.ad_groups):
            if share_aud and rand() < 0.6:
                s = randrange(len(share_aud))
                account, main = share_rec[s], share_aud[s]
            else:
                main = randrange(n_aud)
                account = owners[main]
            rows = [main]
            other = first_owned.get(account)
            if other is not None and other != main and rand() < 0.5:
                rows.append(other)
            exclude_main = rand() < 0.25
            for position, j in enumerate(rows):
                mode = "exclude" if (position == 0) == exclude_main else "include"
                targeting.append((ad_group_id(k), audience_id(j), mode, position))
            yield (ad_group_id(k), account_id(account), f"Ad group {k}", "enabled", STAMP)
    _batched(conn, "INSERT INTO ad_group (id, account_id, name, status, updated_at) VALUES (?, ?, ?, ?, ?)",
             ad_groups(), bar)
    bar.update(2 * sizes.ad_groups - len(targeting))  # the bar counted 3 rows per ad group
    _batched(conn, "INSERT INTO ad_group_audience (ad_group_id, audience_id, mode, position)"
                   " VALUES (?, ?, ?, ?)", targeting, bar)
