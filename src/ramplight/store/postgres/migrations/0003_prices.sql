-- The price table (core/prices.py): USD per million input and output tokens, per model.
CREATE TABLE prices (
    model       TEXT PRIMARY KEY,
    doc         TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
