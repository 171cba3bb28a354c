-- Eval gate results (`ramplight gate --flag`): evidence linked to the flag and environment,
-- shown with the flag's next decision and on its timeline.
CREATE TABLE eval_gates (
    gate_id      TEXT PRIMARY KEY,
    ts           TIMESTAMPTZ NOT NULL,
    flag_key     TEXT NOT NULL,
    environment  TEXT NOT NULL,
    passed       BOOLEAN NOT NULL,
    doc          TEXT NOT NULL
);
CREATE INDEX eval_gates_by_flag ON eval_gates (flag_key, environment, ts);
