-- The last lake snapshot whose rows this file no longer holds: retention deleted the
-- copies of everything before its oldest kept one. With no copy kept (all older than the
-- retention age), everything up to $1, the last snapshot copied.
SELECT coalesce(min(first_snapshot) - 1, $1) FROM lake_pulls
