-- How many join hashes were written in [$1, $2), and the write time below which at most
-- $3 of them were (NULL when there are none): the rows not yet in a run, and where a
-- bounded run of them ends. Zone maps on `updated_unix_nano` skip the rest of the tables.
WITH unsorted AS (
    SELECT updated_unix_nano AS u FROM flow_traces WHERE updated_unix_nano >= $1 AND updated_unix_nano < $2
    UNION ALL
    SELECT updated_unix_nano FROM flow_join_keys WHERE updated_unix_nano >= $1 AND updated_unix_nano < $2
)
SELECT (SELECT count(*) FROM unsorted), (SELECT max(u) FROM (SELECT u FROM unsorted ORDER BY u LIMIT $3));
