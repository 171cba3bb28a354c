-- An exposure's evaluation reason (the DuckDB store's migration 0015 says why).
ALTER TABLE exposures ADD COLUMN evaluation_reason TEXT;
