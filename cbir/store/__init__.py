"""The index database: the only code that imports sqlite3, sqlite-utils and the writer lock.

Knows nothing of colours or searching: it stores and returns rows, BLOBs and metadata, checked on the way out.
"""

from .database import SCHEMA_VERSION, TABLES, Store, integrity_check

__all__ = ["SCHEMA_VERSION", "TABLES", "Store", "integrity_check"]
