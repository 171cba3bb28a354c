"""What applications import: the client, its config source and event queue, and `testing`
(InMemory: the client with no server, for applications' own tests), and `openfeature` (the
provider; needs the `openfeature` extra)."""
