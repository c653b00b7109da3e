-- Each image's item statistics summed per number of ratings m (items, and the integer sums interval alpha is made
-- of): one pass over the items (40M at a million images), so that each attribute's groups (agreement_sums.sql)
-- join a row per image and m instead of every item. Integer sums, so regrouping them changes no result.
CREATE OR REPLACE TEMP TABLE agreement_per_image AS
SELECT
    collection,
    scale,
    image_id,
    m::BIGINT AS m,
    count(*) AS items,
    sum(s1::HUGEINT) AS t1,
    sum(s2::HUGEINT) AS t2,
    sum(m::BIGINT * s2::HUGEINT - s1::HUGEINT * s1::HUGEINT) AS d
FROM {{ items }}
GROUP BY ALL;
