-- The two accepted scales with their keys, for the Python models that name them.
select {{ scale_key('scale') }}::integer as scale_key, scale
from (values ('binary'), ('intensity')) as scales (scale)
