-- Records a queue alias once ($5: 'learnt' or 'config').
INSERT INTO queue_aliases (system, alias, queue, learnt_unix_nano, origin)
SELECT $1, $2, $3, $4, $5
WHERE NOT EXISTS (SELECT 1 FROM queue_aliases WHERE system = $1 AND alias = $2 AND queue = $3);
