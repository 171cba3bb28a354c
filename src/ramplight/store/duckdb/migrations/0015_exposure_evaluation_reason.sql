-- Why the SDK assigned an exposure's variation (its evaluation reason): only `rollout` units were
-- randomized by the phase's weights, so the readout compares those alone. NULL (older SDKs,
-- imports without it) counts as `rollout`.
ALTER TABLE exposures ADD COLUMN evaluation_reason VARCHAR;
