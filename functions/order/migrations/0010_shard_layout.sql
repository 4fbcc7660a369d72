-- The layout this shard was written under (issue 14: orders sharded by customer). One row: how
-- many shards the order context had (`order_shards`) and which one this database is. Written
-- once, by the first request that opens the shard (or by `spin-shop-dev reshard`, which rewrites
-- it); every request compares it with the configured count, so a changed `order_shards` is
-- refused instead of stranding orders whose customers now hash to another shard.
CREATE TABLE IF NOT EXISTS shard_layout (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    shards      INTEGER NOT NULL CHECK (shards BETWEEN 1 AND 8),
    shard       INTEGER NOT NULL CHECK (shard >= 0 AND shard < shards),
    recorded_ms INTEGER NOT NULL
)
