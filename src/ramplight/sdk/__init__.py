"""What applications import: the client, its config source and event queue."""
