-- Eval gate results (`ramplight gate --flag`): evidence linked to the flag and environment,
-- shown with the flag's next decision and on its timeline.
CREATE TABLE eval_gates (
    gate_id      VARCHAR PRIMARY KEY,
    ts           TIMESTAMPTZ NOT NULL,
    flag_key     VARCHAR NOT NULL,
    environment  VARCHAR NOT NULL,
    passed       BOOLEAN NOT NULL,
    doc          JSON NOT NULL
);
CREATE INDEX eval_gates_by_flag ON eval_gates (flag_key, environment, ts);
