-- The last commit received before the cutoff ($1, unix ns); NULL when there is none.
SELECT max(commit_seq) FROM commits WHERE committed_unix_nano < $1;
