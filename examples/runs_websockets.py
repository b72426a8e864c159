"""Seed 003's example, offline: two websocket trade feeds -> a local stage -> PostgreSQL.

The run is examples/runs/websockets.yml as the seed wrote it (``variety: socket`` consumers,
``type: local`` stage in ``tmp``, batches of 100, a ``postgres`` producer depending on both),
with its uris pointing at 127.0.0.1. This script serves two trade feeds there (websockets'
server, on a free port), starts a throwaway PostgreSQL, runs the file and counts each table:
every trade sent is a row, once.
"""

import json
import random
import tempfile
import threading
from pathlib import Path

import yaml
from websockets.sync.server import serve

from chronopipe.cli import main
from chronopipe.runs.tempdb import PostgresUnavailable, start_server

HERE = Path(__file__).parent
TRADES = 750  # per feed


def trades(exchange: str, count: int) -> list[str]:
    """Trades as coincap.io sent them: one JSON object per message."""
    rng = random.Random(exchange)
    price, now = 97_000.0, 1_765_000_000_000
    out = []
    for n in range(count):
        price *= 1 + rng.gauss(0, 0.0005)
        out.append(json.dumps({"exchange": exchange, "base": "bitcoin", "quote": "tether",
                               "direction": rng.choice(["buy", "sell"]), "price": round(price, 2),
                               "volume": round(rng.expovariate(20), 6), "timestamp": now + 37 * n,
                               "priceUsd": round(price * 0.9998, 2)}))
    return out


def feed(websocket) -> None:
    """Each path is a feed: send its trades, then close (the consumers end there)."""
    exchange = websocket.request.path.rsplit("/", 1)[-1]
    for message in trades(exchange, TRADES):
        websocket.send(message)


def main_example() -> int:
    try:
        database = start_server()
    except PostgresUnavailable as exc:
        print(f"skipped: {exc}")
        return 0
    server = serve(feed, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.socket.getsockname()[1]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            pipeline = folder / "pipeline.yml"
            text = (HERE / "runs" / "websockets.yml").read_text()
            pipeline.write_text(text.replace("127.0.0.1:8765", f"127.0.0.1:{port}"))
            profiles = folder / "profiles.yml"
            profiles.touch(mode=0o600)
            profiles.write_text(yaml.safe_dump({"postgres": database.profile_dict()}))
            status = main(["run", str(pipeline), "--profiles", str(profiles)])
            with database.connect() as conn:
                for table in ("websocket_1", "websocket_2"):
                    count, first, last = conn.execute(
                        f"SELECT count(*), min(timestamp), max(timestamp) FROM {table}").fetchone()
                    print(f"{table}: {count:,} trades of {TRADES:,} sent, timestamps {first} .. {last}")
            return status
    finally:
        server.shutdown()
        database.stop()


if __name__ == "__main__":
    raise SystemExit(main_example())
