"""Analysis: evidence in the store → sufficient statistics in SQL → readout."""
