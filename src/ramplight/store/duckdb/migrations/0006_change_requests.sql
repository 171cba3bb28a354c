-- Change requests: an expansion or promotion a plan says needs other people's approval is
-- proposed, approved (by someone other than the proposer) or rejected, then applied.

CREATE TABLE change_requests (
    request_id    VARCHAR PRIMARY KEY,
    flag_key      VARCHAR NOT NULL,
    environment   VARCHAR NOT NULL,
    action        VARCHAR NOT NULL,
    percent       DOUBLE,
    reason        VARCHAR,
    proposed_by   VARCHAR NOT NULL,
    proposer_id   VARCHAR NOT NULL,
    proposed_at   TIMESTAMPTZ NOT NULL,
    state         VARCHAR NOT NULL CHECK (state IN ('proposed', 'approved', 'rejected', 'applied')),
    approvals     JSON NOT NULL,
    required      INTEGER NOT NULL,
    decided_at    TIMESTAMPTZ,
    decision_id   VARCHAR
);
