"""Where a study lives: opening the storage URL (PostgreSQL, the embedded SQLite default, a
journal file or a gRPC proxy), locks that serialize study creation, riding out outages, and
taking turns for scarce connections."""
