-- Where each flow's time went, step by step (src/flows/analysis.rs `steps`): a JSON array
-- of {"kind", "step", "ms"}: a service's own time, a destination's queue wait, retry delay,
-- a synchronous call. Kept on the flow's row, so it is replaced with the row (no table,
-- index or delete of its own); the chain page's tail attribution compares the steps of slow
-- and typical flows (queries/chain_breakdown.sql).
ALTER TABLE flows ADD COLUMN steps VARCHAR;
