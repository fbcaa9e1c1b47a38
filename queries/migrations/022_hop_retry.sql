-- A hop's queue wait is unknown when no span shows when its message was sent (no
-- producer in the flow): NULL, not 0. A hop that re-produces a failed record to a retry
-- destination, consumed again by the service that failed it, is marked: its wait is the
-- flow's retry delay, not queue wait.
ALTER TABLE flow_hops ALTER COLUMN queue_wait_ms DROP NOT NULL;
ALTER TABLE flow_hops ADD COLUMN retry BOOLEAN;
