"""The VLM adapter's overhead per request against a fake OpenAI-compatible server on 127.0.0.1, at concurrency 1 and
16: requests per second of `score_images` (prompt, data URL, validation against the taxonomy, cache writes) against
a bare `openai` client loop sending the same requests with the same threads, same run.
`python -m bench.bench_vlm [--images N]`.
"""

import argparse
import hashlib
import io
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from openai import OpenAI
from PIL import Image

from bench.common import best_of, peak_rss_mb
from emonet_assets.lib.leaderboard.vlm import Endpoint, data_url, rating_prompt, score_images
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy
from emonet_assets_tests.local_servers import ChatServer, serving


def adapter(images: list[tuple[str, bytes]], endpoint: Endpoint, taxonomy, root: str) -> None:
    """The adapter on a fresh storage root, so nothing comes from its cache."""
    assert score_images(images, endpoint, taxonomy, Store(root)).counts["images_answered"] == len(images)


def bare(images: list[tuple[str, bytes]], base_url: str, prompt: str, concurrency: int) -> None:
    """The same requests from a plain openai client, each answer only parsed as JSON."""
    with OpenAI(base_url=base_url, api_key="EMPTY") as client:

        def ask(image: bytes) -> dict:
            content = [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": data_url(image)}}]
            message = {"role": "user", "content": content}
            response = client.chat.completions.create(
                model="fake/vl", max_tokens=1024, temperature=0, messages=[message]
            )
            return json.loads(response.choices[0].message.content)

        with ThreadPoolExecutor(concurrency) as pool:
            assert len(list(pool.map(ask, [data for _, data in images]))) == len(images)


def main(n_images: int) -> None:
    taxonomy = load_taxonomy()
    answer = json.dumps({e.name: i % 8 for i, e in enumerate(taxonomy.emotions)})
    images = []
    for i in range(n_images):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), (i % 256, (i // 256) % 256, 90)).save(buffer, format="PNG")
        images.append((hashlib.sha256(buffer.getvalue()).hexdigest(), buffer.getvalue()))
    prompt = rating_prompt(taxonomy)
    with serving(ChatServer(lambda sha: (200, answer))) as server, tempfile.TemporaryDirectory() as tmp:
        roots = (f"{tmp}/root-{i}" for i in range(10**9))
        for concurrency in (1, 16):
            endpoint = Endpoint(name="bench", base_url=server.base_url, model="fake/vl", concurrency=concurrency)
            a = best_of(lambda e=endpoint: adapter(images, e, taxonomy, next(roots)))
            b = best_of(partial(bare, images, server.base_url, prompt, concurrency))
            print(
                f"concurrency {concurrency:>2}, {n_images} images: adapter {n_images / a:,.0f} req/s, bare openai loop "
                f"{n_images / b:,.0f} req/s, overhead {(a - b) / n_images * 1000:.2f} ms/request (ratio {a / b:.2f})"
            )
    print(f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=300)
    main(parser.parse_args().images)
