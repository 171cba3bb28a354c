-- Metric definitions (analysis): one JSON document per metric key, versioned.
CREATE TABLE metrics (
    key         VARCHAR PRIMARY KEY,
    version     INTEGER NOT NULL,
    doc         JSON NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
