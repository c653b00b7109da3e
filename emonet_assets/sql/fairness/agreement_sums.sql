-- Per (collection, scale, group of one attribute): images, items, and for each number of ratings m >= 2 the integer
-- sums interval alpha is made of (m, s1, s2 and m * s2 - s1^2, the within-item disagreement before dividing by
-- m - 1), from each image's sums (agreement_per_image.sql). Images join their group by integer code (an image
-- without demographics is in the missing group); the statistics never leave DuckDB.
WITH labelled AS (
    SELECT
        s.collection,
        s.scale,
        d.image_code,
        CASE WHEN d.image_code IS NULL THEN s.image_id END AS unknown_image,
        coalesce(d.grp, {{ missing }}) AS grp,
        s.m,
        s.items,
        s.t1,
        s.t2,
        s.d
    FROM agreement_per_image AS s
    LEFT JOIN demographics AS d ON s.image_id = d.image_id
),
groups AS (
    SELECT collection, scale, grp, count(DISTINCT image_code) + count(DISTINCT unknown_image) AS n_images, sum(items) AS n_items
    FROM labelled
    GROUP BY collection, scale, grp
),
per_m AS (
    SELECT
        collection,
        scale,
        grp,
        list(m ORDER BY m) AS m,
        list(n ORDER BY m) AS n,
        list(t1 ORDER BY m) AS t1,
        list(t2 ORDER BY m) AS t2,
        list(d ORDER BY m) AS d
    FROM (
        SELECT collection, scale, grp, m, sum(m * items)::HUGEINT AS n, sum(t1) AS t1, sum(t2) AS t2, sum(d) AS d
        FROM labelled
        WHERE m >= 2
        GROUP BY collection, scale, grp, m
    )
    GROUP BY collection, scale, grp
)
SELECT g.collection, g.scale, g.grp, g.n_images, g.n_items::BIGINT AS n_items, p.m, p.n, p.t1, p.t2, p.d
FROM groups AS g
LEFT JOIN per_m AS p USING (collection, scale, grp)
ORDER BY g.collection, g.scale, g.grp;
