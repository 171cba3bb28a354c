-- People who sign in to the web UI, and their sessions. A password is kept only as an argon2id
-- hash; a session only as the SHA-256 of its token (the browser's cookie holds the token).
-- A session belongs to a user or to an admin API key, never both.
CREATE TABLE users (
    id             VARCHAR PRIMARY KEY,
    name           VARCHAR NOT NULL UNIQUE,
    role           VARCHAR NOT NULL CHECK (role IN ('viewer', 'editor', 'approver', 'admin')),
    password_hash  VARCHAR NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    disabled_at    TIMESTAMPTZ
);

CREATE TABLE sessions (
    token_hash  VARCHAR PRIMARY KEY,
    user_id     VARCHAR,
    key_id      VARCHAR,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    CHECK ((user_id IS NULL) <> (key_id IS NULL))
);
