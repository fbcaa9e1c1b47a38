-- The last commit received at or before $1 (unix ns): flows whose spans all came by then
-- have had their quiet period and are settled.
SELECT coalesce(max(commit_seq), 0) FROM commits WHERE committed_unix_nano <= $1;
