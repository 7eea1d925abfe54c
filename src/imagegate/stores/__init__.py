"""Storage adapters behind :mod:`imagegate.ports`: in-memory, SQL (SQLite by default, PostgreSQL
at scale), Redis (rate limits) and a content-addressed blob directory. Only composition roots
import from here."""
