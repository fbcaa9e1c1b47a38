SELECT current_setting('threads')::BIGINT;
