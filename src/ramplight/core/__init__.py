"""Pure core: flags and evaluation, bucketing, the measurement contract, errors. No I/O."""
