"""How this package runs dbt: its project's folder, and `emonet-dbt`, dbt's command line with Python's cyclic
garbage collector set for a short-lived process.

dbt's imports, its parsed manifest and its Jinja contexts are several hundred thousand objects that live until dbt
exits. Each of the collector's full passes walks all of them again, as does its last pass when the interpreter
exits: 1 to 1.7 s of a 19-21 s build of 16M ratings. Here those objects are moved out of the collector's reach once
dbt is imported and again before exit. Young garbage is still collected, every 100,000 allocations rather than 700,
and the older generations every 50 passes of the younger one rather than 10.
"""

import gc
import sys
from pathlib import Path

from emonet_assets.lib.shared.package_data import package_path

DBT_PROJECT_DIR = package_path("dbt_project")
# The console script of `main`, beside the environment's Python: what the dbt resource and the benches run.
DBT_EXECUTABLE = str(Path(sys.executable).parent / "emonet-dbt")
YOUNG_THRESHOLD = 100_000
OLDER_THRESHOLD = 50


def main() -> None:
    gc.set_threshold(YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
    from dbt.cli.main import cli

    gc.freeze()
    try:
        cli()
    finally:
        gc.freeze()
