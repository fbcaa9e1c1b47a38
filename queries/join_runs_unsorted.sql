-- How many join hashes were written in [$1, $2), and the write time below which at most
-- $3 of them were (NULL when there are none): the rows not yet in a run, and where a
-- bounded run of them ends.
WITH unsorted AS (
    SELECT updated_unix_nano AS u FROM join_hashes WHERE updated_unix_nano >= $1 AND updated_unix_nano < $2
)
SELECT (SELECT count(*) FROM unsorted), (SELECT max(u) FROM (SELECT u FROM unsorted ORDER BY u LIMIT $3));
