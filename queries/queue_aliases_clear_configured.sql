-- The config file's aliases are replaced at every start.
DELETE FROM queue_aliases WHERE origin = 'config';
