"""HTTP routes grouped by audience, each group a router with its authentication attached:
`admin` (`/api/…`, admin keys), `sdk` (`/sdk/…`), `ingest` (`/ingest/…`) and `otlp` (`/v1/…`)
(SDK keys of an environment, or admin keys naming one), and `ops` (`/healthz`, no key)."""
