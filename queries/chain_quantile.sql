SELECT chain, quantile_cont(duration_ms, $3) AS value, count(*) AS flows
FROM flows
WHERE end_unix_nano >= $1 AND end_unix_nano < $2
GROUP BY chain
ORDER BY chain;
