"""The simulated AI rollout behind `ramplight demo`."""
