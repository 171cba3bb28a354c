-- Evidence sources: exposures and events read from the team's own tables through SQL and a
-- declarative field mapping (core/sources.py); versioned documents like metrics.
CREATE TABLE sources (
    key         TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    doc         TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
