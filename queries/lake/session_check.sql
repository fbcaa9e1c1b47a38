-- Whether the catalog session holding the lock is still alive (PostgreSQL).
SELECT 1
