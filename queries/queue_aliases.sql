-- Every learnt queue alias (see migration 007).
SELECT system, alias, queue FROM queue_aliases ORDER BY system, alias, queue;
