-- Flow and trace ids in the stitcher's tables as UUID (16 bytes, compared and hashed as
-- one 128-bit number) instead of 32 hex digits. The stitcher writes about ten such ids
-- per flow; as strings, compressing them at each checkpoint (FSST and dictionary
-- analysis) cost a tenth of its time, and they were the widest columns of these tables
-- Spans, links and logs keep their ids as digits:
-- they are what search and the OTLP exporters' ids are matched against.
--
-- `hex_id(id)` gives the digits back (UUID's text form has dashes): queries return ids
-- in that form, the one the pages, the API and the spans table use. Its ordering is the
-- UUID's: a UUID sorts as its digits do.
--
-- Ingest only ever stored 32 lower-case hex digits (never all zeros, which OTLP calls
-- invalid), so every id converts; a row whose id does not (a file edited by hand) gets
-- the zero id and is then dropped, rather than failing the start. (Dropping it before
-- the conversion does not do: the conversion still sees it within the transaction.
-- The conversion names no macro: DuckDB 1.5 cannot replay such an ALTER from its log.)
CREATE MACRO hex_id(id) AS replace(CAST(id AS VARCHAR), '-', '');

ALTER TABLE flows ALTER flow_id TYPE UUID USING coalesce(TRY_CAST(flow_id AS UUID), '00000000000000000000000000000000'::UUID);
ALTER TABLE flow_traces ALTER flow_id TYPE UUID USING coalesce(TRY_CAST(flow_id AS UUID), '00000000000000000000000000000000'::UUID);
ALTER TABLE flow_traces ALTER trace_id TYPE UUID USING coalesce(TRY_CAST(trace_id AS UUID), '00000000000000000000000000000000'::UUID);
ALTER TABLE flow_join_keys ALTER flow_id TYPE UUID USING coalesce(TRY_CAST(flow_id AS UUID), '00000000000000000000000000000000'::UUID);
ALTER TABLE flow_join_keys ALTER trace_id TYPE UUID USING coalesce(TRY_CAST(trace_id AS UUID), '00000000000000000000000000000000'::UUID);
ALTER TABLE flow_hops ALTER flow_id TYPE UUID USING coalesce(TRY_CAST(flow_id AS UUID), '00000000000000000000000000000000'::UUID);
ALTER TABLE flow_hops ALTER producer_trace_id TYPE UUID USING TRY_CAST(producer_trace_id AS UUID);
ALTER TABLE flow_retries ALTER flow_id TYPE UUID USING coalesce(TRY_CAST(flow_id AS UUID), '00000000000000000000000000000000'::UUID);
ALTER TABLE flow_dead_letters ALTER flow_id TYPE UUID USING coalesce(TRY_CAST(flow_id AS UUID), '00000000000000000000000000000000'::UUID);

DELETE FROM flows WHERE flow_id = '00000000000000000000000000000000';
DELETE FROM flow_traces WHERE flow_id = '00000000000000000000000000000000' OR trace_id = '00000000000000000000000000000000';
DELETE FROM flow_join_keys WHERE flow_id = '00000000000000000000000000000000' OR trace_id = '00000000000000000000000000000000';
DELETE FROM flow_hops WHERE flow_id = '00000000000000000000000000000000';
DELETE FROM flow_retries WHERE flow_id = '00000000000000000000000000000000';
DELETE FROM flow_dead_letters WHERE flow_id = '00000000000000000000000000000000';
