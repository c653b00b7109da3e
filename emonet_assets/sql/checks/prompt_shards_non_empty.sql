-- Shards that are empty, missing, the wrong size, not contiguous or larger than the shard size.
-- Reads: prompts (prompt_design), shards (prompt_shards), shard_size (one row, column `n`).
WITH found AS (
    SELECT shard, count(*) AS prompts_found, min(position) AS first_position, max(position) AS last_position
    FROM prompts
    GROUP BY shard
),
joined AS (
    SELECT
        coalesce(s.shard, f.shard)        AS shard,
        s.n_prompts                       AS n_prompts,
        coalesce(f.prompts_found, 0)      AS prompts_found,
        CASE
            WHEN s.shard IS NULL THEN 'shard missing from prompt_shards'
            WHEN f.shard IS NULL OR s.n_prompts = 0 THEN 'empty shard'
            WHEN f.prompts_found <> s.n_prompts THEN 'size differs from the design'
            WHEN f.last_position - f.first_position + 1 <> f.prompts_found THEN 'positions not contiguous'
            WHEN f.prompts_found > (SELECT n FROM shard_size) THEN 'larger than shard_size'
        END                               AS problem
    FROM shards s
    FULL OUTER JOIN found f ON s.shard = f.shard
)
SELECT * FROM joined WHERE problem IS NOT NULL ORDER BY shard;
