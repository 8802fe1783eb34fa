-- ticklake's DuckDB schema, version 1 (the baseline).
--
-- Applied by ticklake itself (analytics/database.py) to a new database, in one transaction
-- with meta.schema_version = 1. This file is never edited once released: a later change is
-- a new numbered migration appended to analytics/database.py's MIGRATIONS, and
-- meta.schema_version records the last one applied.

-- One row per (ticker, one-minute window) that held at least one tick. The feature columns
-- are exactly analytics.features.FEATURE_SCHEMA's (see that module for each definition);
-- recomputing a window replaces its row in one transaction (contract 5).
CREATE TABLE features (
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
    computed_at TIMESTAMPTZ NOT NULL,       -- when this row was (re)computed
    PRIMARY KEY (ticker, window_start)
);

-- Small key/value facts about the database: schema_version, views_signature.
CREATE TABLE meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
