-- When each user last signed in, for the users page (set with each new session).
ALTER TABLE users ADD COLUMN last_sign_in_at TIMESTAMPTZ;
