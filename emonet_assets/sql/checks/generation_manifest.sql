-- Manifest rows that break the contract of generated_images, one row per problem.
-- Reads: prompts (prompt_design), manifest (generated_images, every materialized shard).
WITH shards AS (SELECT DISTINCT shard FROM manifest)
SELECT 'prompt without an image' AS problem, p.shard, p.prompt_id, NULL AS model_fingerprint
FROM prompts p
JOIN shards USING (shard)
WHERE p.prompt_id NOT IN (SELECT prompt_id FROM manifest)
UNION ALL
SELECT 'duplicate row', shard, prompt_id, model_fingerprint
FROM manifest
GROUP BY shard, prompt_id, model_fingerprint
HAVING count(*) > 1
UNION ALL
SELECT 'image for a prompt not in its shard', m.shard, m.prompt_id, m.model_fingerprint
FROM manifest m
LEFT JOIN prompts p ON p.prompt_id = m.prompt_id AND p.shard = m.shard
WHERE p.prompt_id IS NULL
ORDER BY problem, shard, prompt_id;
