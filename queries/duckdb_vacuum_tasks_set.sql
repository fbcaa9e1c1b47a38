-- Runs of row groups each table's checkpoint may merge into fewer (0: none).
SET GLOBAL max_vacuum_tasks = ?;
