-- ticklake's DuckDB schema, migration 2: the features table without its PRIMARY KEY.
--
-- Keeping the key's index took 44 % of the insert's time (719 k feature rows, one thread:
-- 1.00 s of CPU with it, 0.56 s without; a re-backfill replacing them 0.99 s against 0.74 s).
-- One row per (ticker, window_start) (contract 5) is kept by the one writer instead:
-- analytics/database.py's upsert_features deduplicates a batch's keys, then deletes the
-- stored rows of those keys and inserts the batch in one transaction. Columns, types and
-- NOT NULL constraints are version 1's. Rows are copied in their stored order (the order
-- the writer appended them: time order, which DuckDB's per-row-group min/max of
-- window_start prune by); sorting them again took 2.3 GB of memory for 7.9 M rows.

CREATE TABLE features_keyless (
    ticker VARCHAR NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,      -- [window_start, window_end), UTC, one minute
    window_end TIMESTAMPTZ NOT NULL,
    open REAL NOT NULL,                     -- first price by (time, arrival); float32 as sent
    high REAL NOT NULL,
    low REAL NOT NULL,
    close REAL NOT NULL,                    -- last price by (time, arrival)
    volume BIGINT,                          -- traded in the window from day_volume; NULL: none
    vwap DOUBLE,                            -- NULL when volume is 0 or NULL
    tick_count BIGINT NOT NULL,
    first_time TIMESTAMPTZ NOT NULL,
    last_time TIMESTAMPTZ NOT NULL,         -- the seed's "time"
    mean_price DOUBLE,
    std_price DOUBLE,                       -- sample standard deviation; NULL for one tick
    log_return DOUBLE,                      -- ln(close / open) within the window
    realized_variance DOUBLE,               -- sum of squared tick log returns in the window
    last_day_volume BIGINT,                 -- last cumulative day_volume seen in the window
    market_hours VARCHAR,                   -- of the last tick (REGULAR_MARKET, ...)
    late BOOLEAN NOT NULL,                  -- a tick was received after window_end + lateness
    gap BOOLEAN,                            -- the recorder was disconnected during the window;
                                            -- NULL: no recording session known (imported data)
    computed_at TIMESTAMPTZ NOT NULL        -- when this row was (re)computed
);

INSERT INTO features_keyless SELECT * FROM features;
DROP TABLE features;
ALTER TABLE features_keyless RENAME TO features;
