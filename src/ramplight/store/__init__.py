"""Storage: one interface (`store.base`), one sub-package per backend."""
