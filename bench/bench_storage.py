"""What atomic, content-addressed writes cost against plain file writes of the same bytes, same run."""

import hashlib
import os
import tempfile

import numpy as np
import polars as pl

from bench.common import best_of, peak_rss_mb
from emonet_assets.lib.shared.storage import Store

N_IMAGES = 500


def main() -> None:
    rng = np.random.default_rng(0)
    blobs = [rng.bytes(12_000) for _ in range(N_IMAGES)]  # about a 64x64 PNG each
    frame = pl.DataFrame({"i": np.arange(1_000_000), "x": rng.random(1_000_000)})

    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(10**9))

        def store_images():
            store = Store(os.path.join(tmp, f"store-{next(counter)}"))
            for blob in blobs:
                store.write_image(blob)

        def plain_images():
            folder = os.path.join(tmp, f"plain-{next(counter)}")
            os.makedirs(folder)
            for blob in blobs:
                with open(os.path.join(folder, hashlib.sha256(blob).hexdigest() + ".png"), "wb") as fh:
                    fh.write(blob)

        def store_table():
            Store(os.path.join(tmp, f"table-{next(counter)}")).write_table("bench", frame)

        def plain_table():
            frame.write_parquet(os.path.join(tmp, f"plain-{next(counter)}.parquet"), compression="zstd")

        s, p = best_of(store_images), best_of(plain_images)
        print(f"{N_IMAGES} images: store {N_IMAGES / s:,.0f}/s, plain writes {N_IMAGES / p:,.0f}/s, ratio {p / s:.2f}")
        s, p = best_of(store_table), best_of(plain_table)
        print(f"1M-row Parquet table: store {s * 1000:.0f} ms, plain {p * 1000:.0f} ms, ratio {p / s:.2f}")
    print(f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
