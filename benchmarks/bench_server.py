"""Load test of `samkit serve`: N clients x M prompt requests over HTTP on 127.0.0.1.

Starts the server (the real CLI, in a subprocess), gives each client its own uploaded image,
then every client sends M point prompts (random clicks, three PNG masks per reply) as fast as it
can. Prints latency percentiles, throughput and the error count, next to the same prompts
decoded by the library in this process (no HTTP) as the reference.

    python benchmarks/bench_server.py --clients 4 --requests 50 --random-tiny
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import synthetic_image  # noqa: E402
from test_server_api import png_file, request, running_server, tiny_model_file, upload  # noqa: E402


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
        "mean": float(a.mean()),
    }


def library_reference(model_path: Path, images: list[np.ndarray], clicks: list) -> list[float]:
    """The same prompts through ``samkit.Predictor`` in this process: decoder time only."""
    import samkit

    pred = samkit.Predictor(samkit.load(model_path))
    out = []
    for img, cl in zip(images, clicks):
        pred.set_image(img)
        for x, y in cl:
            t0 = time.perf_counter()
            pred.predict(np.array([[x, y]]), np.array([1]))
            out.append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=50, help="prompt requests per client")
    ap.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--model", help="model file (default: the 256-px random test model)")
    ap.add_argument("--random-tiny", action="store_true", help="use the 256-px random model")
    args = ap.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-server-"))
    model_path = Path(args.model) if args.model else tiny_model_file(folder)
    if args.model:  # running_server builds its model from folder/tiny.safetensors
        (folder / "tiny.safetensors").symlink_to(model_path.resolve())
    h, w = args.size
    rng = np.random.default_rng(0)
    images = [synthetic_image(h, w, seed=i) for i in range(args.clients)]
    clicks = [rng.uniform([0, 0], [w - 1, h - 1], (args.requests, 2)) for _ in images]

    with running_server(folder) as url:
        ids, embed_ms = [], []
        for img in images:
            t0 = time.perf_counter()
            status, info = upload(url, png_file(img))
            embed_ms.append((time.perf_counter() - t0) * 1e3)
            assert status == 201, info
            ids.append(info["id"])
        lat: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def client(i: int) -> None:
            for x, y in clicks[i]:
                body = {"points": [[float(x), float(y)]], "labels": [1], "format": "png"}
                t0 = time.perf_counter()
                try:
                    status, res = request("POST", f"{url}/api/images/{ids[i]}/predict", body)
                    ok = status == 200 and len(res["masks"]) == 3
                except Exception as e:  # every failure counts, whatever it is
                    ok, res = False, repr(e)
                ms = (time.perf_counter() - t0) * 1e3
                with lock:
                    lat.append(ms)
                    if not ok:
                        errors.append(str(res)[:200])

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        _, health = request("GET", url + "/api/health")
    ref = library_reference(model_path, images, clicks)

    n = args.clients * args.requests
    rows = [
        (f"HTTP predict, {args.clients} clients", percentiles(lat), n / wall),
        ("library predict (no HTTP, 1 thread)", percentiles(ref), 1e3 / statistics.mean(ref)),
        ("HTTP upload + embed (sequential)", percentiles(embed_ms), None),
    ]
    print(
        f"image {w}x{h}, model {args.model or 'random 256-px test model'}, "
        f"{args.clients} clients x {args.requests} requests, 127.0.0.1"
    )
    print("| what | p50 ms | p90 ms | p99 ms | max ms | mean ms | req/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, p, rps in rows:
        r = f"{rps:.1f}" if rps else "-"
        print(
            f"| {name} | {p['p50']:.1f} | {p['p90']:.1f} | {p['p99']:.1f} | {p['max']:.1f} "
            f"| {p['mean']:.1f} | {r} |"
        )
    print(f"requests: {len(lat)}, errors: {len(errors)}; cache: {json.dumps(health['cache'])}")
    print(f"load average during the run (1, 5, 15 min): {os.getloadavg()}")
    for e in errors[:5]:
        print("error:", e)
    return 1 if errors or len(lat) != n else 0


if __name__ == "__main__":
    sys.exit(main())
