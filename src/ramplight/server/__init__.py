"""The HTTP server: admin, SDK config and ingestion APIs over one store."""
