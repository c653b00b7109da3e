-- Prompts per design cell over the whole grid (empty cells count as 0), and cells whose
-- actual count differs from the plan. Reads: prompts, cells.
WITH counts AS (
    SELECT c.cell_id, c.emotion_id, c.ethnicity, c.gender, c.age, c.planned,
           count(p.prompt_id) AS actual
    FROM cells c
    LEFT JOIN prompts p USING (cell_id)
    GROUP BY ALL
)
SELECT
    count(*)                                   AS cells,
    min(actual)                                AS min_per_cell,
    max(actual)                                AS max_per_cell,
    max(actual) - min(actual)                  AS spread,
    count(*) FILTER (WHERE actual <> planned)  AS off_plan_cells,
    (SELECT count(*) FROM prompts WHERE cell_id NOT IN (SELECT cell_id FROM cells)) AS prompts_outside_grid,
    list(emotion_id || ' / ' || ethnicity || ' / ' || gender || ' / ' || age || ': ' || actual)
        FILTER (WHERE actual = (SELECT max(actual) FROM counts)) [1:5] AS fullest_cells
FROM counts;
