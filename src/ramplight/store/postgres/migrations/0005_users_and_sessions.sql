-- People who sign in to the web UI, and their sessions. A password is kept only as an argon2id
-- hash; a session only as the SHA-256 of its token (the browser's cookie holds the token).
-- A session belongs to a user or to an admin API key, never both.
CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    role           TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'approver', 'admin')),
    password_hash  TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    disabled_at    TIMESTAMPTZ
);

CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT,
    key_id      TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    CHECK ((user_id IS NULL) <> (key_id IS NULL))
);
