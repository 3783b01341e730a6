"""Where a study lives: opening the storage URL (PostgreSQL, the embedded SQLite default, a
journal file or a gRPC proxy), locks that serialize study creation, and riding out outages."""
