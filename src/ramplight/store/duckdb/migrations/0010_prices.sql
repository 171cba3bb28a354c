-- The price table (core/prices.py): USD per million input and output tokens, per model.
CREATE TABLE prices (
    model       VARCHAR PRIMARY KEY,
    doc         JSON NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
