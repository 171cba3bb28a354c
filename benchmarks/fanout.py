"""Config fan-out: how long until every connected SDK serves a kill?

1,000 Python SDK `Client`s (the real SDK: each follows `/sdk/stream` on its own thread, decodes
and compiles the pushed config and swaps it in), spread over worker processes, are connected to
one `ramplight serve` on 127.0.0.1. The flag serves `candidate` to everyone; the benchmark kills
it (and then restores it, and kills it again) through the admin API and records, in each client,
the moment its own evaluation first serves the new state (a config listener evaluates the flag
as soon as a config is installed). Printed: per round, how long the admin request took to be
answered (the change committed and audited), the time from the request to the p50 / p99 / last
client serving it, and the server's memory per open stream.

The anchor is what an SDK that polls does with the same clients (Unleash's and GrowthBook's
SDKs poll by default; Unleash every 15 s): the same 1,000 clients with `stream=False` polling
every `--poll` seconds (5 by default: faster than those defaults), run in the same program.
Its latency is bounded by the interval and its cost is N / interval requests a second forever.

With `--flags N` the environment holds N more flags (a big team's config: each pushed change
then carries all of them), and the stream is run twice: gzipped, as the SDK asks for it, and
as is (`Accept-Encoding: identity`), to show what compressing each event once per version buys.

    .venv/bin/python benchmarks/fanout.py            # 1,000 clients, 4 worker processes
    .venv/bin/python benchmarks/fanout.py --quick    # 100 clients, a smoke run
    .venv/bin/python benchmarks/fanout.py --clients 2000 --workers 8 --json
    .venv/bin/python benchmarks/fanout.py --flags 2000 --clients 200 --no-anchor
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from _common import RamplightServer, load_average, loopback_only, machine

FLAG = "support_assistant_profile"
FLAG_DOC = {
    "key": FLAG,
    "type": "json",
    "assignment_unit": "conversation",
    "variations": [
        {"key": "control", "value": {"prompt_profile": "support_v3", "model_route": "stable"}},
        {"key": "candidate", "value": {"prompt_profile": "support_v4", "model_route": "cascade"}},
    ],
    "environments": {
        "production": {
            "default_variation": "control",
            "off_variation": "control",
            "rollout": {"weights": {"control": 0, "candidate": 100}},
        }
    },
}


def other_flags(n: int) -> list[dict[str, Any]]:
    """`n` more flags of the kinds a team keeps: booleans and JSON profiles, each with a
    targeting rule, a rollout and a salt of its own."""
    flags = []
    for i in range(n):
        flags.append(
            {
                "key": f"team_flag_{i:05d}",
                "type": "json",
                "assignment_unit": "user",
                "description": f"prompt profile experiment {i} for the support assistant",
                "variations": [
                    {"key": "control", "value": {"prompt_profile": f"profile_{i}_a", "temperature": 0.2}},
                    {"key": "candidate", "value": {"prompt_profile": f"profile_{i}_b", "temperature": 0.4}},
                ],
                "environments": {
                    "production": {
                        "default_variation": "control",
                        "off_variation": "control",
                        "rules": [
                            {
                                "id": "paid_plans",
                                "clauses": [
                                    {"attribute": "plan", "op": "in", "values": ["team", "enterprise"]}
                                ],
                                "variation": "candidate",
                            }
                        ],
                        "rollout": {"weights": {"control": 90, "candidate": 10}},
                    }
                },
            }
        )
    return flags


def worker(
    url: str,
    sdk_key: str,
    clients: int,
    stream: bool,
    poll: float,
    rounds: int,
    out: Any,
    go: Any,
    identity: bool = False,
) -> None:
    """`clients` SDK Clients; for each round, the wall-clock time each first served the round's
    state ('off' after a kill, 'rollout' after a restore). `identity`: they refuse gzip."""
    loopback_only()
    import httpx

    from ramplight import Client

    class Identity(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            request.headers["Accept-Encoding"] = "identity"
            return super().handle_request(request)

    expected = ["off" if r % 2 == 0 else "rollout" for r in range(rounds)]
    seen: list[list[float]] = [[] for _ in range(rounds)]
    lock = threading.Lock()
    made: list[Client] = []

    def follow(client: Client) -> None:
        state = {"round": 0}

        def changed(_: list[str]) -> None:
            now = time.time()
            reason = client.evaluate(FLAG, "conv_1").reason
            with lock:
                r = state["round"]
                if r < rounds and reason == expected[r]:
                    seen[r].append(now)
                    state["round"] = r + 1

        client.on_config_change(changed)

    for _ in range(clients):
        # init_timeout=0: connect them all at once, then wait for every first config.
        client = Client(
            sdk_key,
            url=url,
            stream=stream,
            poll_interval=poll,
            init_timeout=0,
            flush_interval=60,
            transport=Identity() if identity else None,
        )
        made.append(client)
    deadline = time.monotonic() + 300
    while not all(c.ready for c in made) and time.monotonic() < deadline:
        time.sleep(0.05)
    for client in made:
        follow(client)
    ready = sum(c.evaluate(FLAG, "conv_1").reason == "rollout" for c in made)
    out.put(("ready", ready))
    go.wait()
    deadline = time.monotonic() + (rounds * (poll * 3 + 30))
    while time.monotonic() < deadline:
        with lock:
            if all(len(s) == clients for s in seen):
                break
        time.sleep(0.05)
    out.put(("seen", seen))
    for client in made:
        client.close(timeout=1)


def server_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run(
    mode: str, n: int, workers: int, poll: float, rounds: int, gap: float, flags: int = 0
) -> dict[str, Any]:
    """mode: `stream` (gzipped, as the SDK asks), `stream-identity` or `poll`."""
    with tempfile.TemporaryDirectory(prefix="ramplight-fanout-") as tmp:
        server = RamplightServer(Path(tmp) / "fanout.duckdb", Path(tmp) / "server.log")
        try:
            assert server.admin.post("/api/flags", json=FLAG_DOC).status_code == 201
            more = other_flags(flags)
            for start in range(0, len(more), 500):
                applied = server.admin.post("/api/apply", json={"flags": more[start : start + 500]})
                assert applied.status_code == 200, applied.text[:300]
            sdk_key = server.admin.post(
                "/api/keys", json={"kind": "sdk", "name": "fanout", "environment": "production"}
            ).json()["key"]
            sizes = {
                coding: int(
                    httpx.get(
                        f"{server.url}/sdk/config",
                        headers={"Authorization": f"Bearer {sdk_key}", "Accept-Encoding": coding},
                        trust_env=False,
                    ).headers["content-length"]
                )
                for coding in ("identity", "gzip")
            }
            busy_before = server.cpu_seconds()
            rss_before = server_rss_kib(server.process.pid)
            ctx = mp.get_context("spawn")
            out, go = ctx.Queue(), ctx.Event()
            share = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
            procs = [
                ctx.Process(
                    target=worker,
                    args=(
                        server.url,
                        sdk_key,
                        k,
                        mode != "poll",
                        poll,
                        rounds,
                        out,
                        go,
                        mode == "stream-identity",
                    ),
                    daemon=True,
                )
                for k in share
                if k
            ]
            started = time.monotonic()
            for p in procs:
                p.start()
            ready = sum(out.get(timeout=600)[1] for _ in procs)
            connect_seconds = time.monotonic() - started
            if ready != n:
                raise RuntimeError(f"only {ready} of {n} clients had the config")
            time.sleep(1.0)  # let every stream settle into waiting
            streams = server.admin.get("/healthz").json().get("sdk_streams", 0)
            rss_after = server_rss_kib(server.process.pid)
            go.set()
            sent: list[float] = []
            answered: list[float] = []
            for r in range(rounds):
                if r:
                    time.sleep(gap)
                action = "kill" if r % 2 == 0 else "restore"
                sent.append(time.time())
                response = server.admin.post(
                    f"/api/flags/{FLAG}/{action}", json={"environment": "production"}
                )
                response.raise_for_status()
                answered.append(time.time())
            seen: list[list[float]] = [[] for _ in range(rounds)]
            for _ in procs:
                _, per_round = out.get(timeout=rounds * (poll * 3 + 60))
                for r in range(rounds):
                    seen[r].extend(per_round[r])
            busy = server.cpu_seconds() - busy_before  # connecting, the rounds, and the heartbeats between
            for p in procs:
                p.join(timeout=30)
            result: dict[str, Any] = {
                "mode": mode,
                "clients": n,
                "flags": flags + 1,
                "config_bytes": sizes["identity"],
                "config_gzip_bytes": sizes["gzip"],
                "server_cpu_seconds": round(busy, 2),
                "workers": len(procs),
                "connect_seconds": round(connect_seconds, 2),
                "server_streams": streams,
                "server_kib_per_client": round((rss_after - rss_before) / n, 1),
                "rounds": [],
            }
            for r in range(rounds):
                lat = sorted(t - sent[r] for t in seen[r])
                if not lat:
                    result["rounds"].append({"served": 0})
                    continue
                result["rounds"].append(
                    {
                        "action": "kill" if r % 2 == 0 else "restore",
                        "request_ms": round(1000 * (answered[r] - sent[r]), 1),
                        "served": len(lat),
                        "p50_ms": round(1000 * statistics.median(lat), 1),
                        "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
                        "p100_ms": round(1000 * lat[-1], 1),
                    }
                )
            return result
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4, help="processes the clients are spread over")
    parser.add_argument("--poll", type=float, default=5.0, help="the polling anchor's interval (s)")
    parser.add_argument("--rounds", type=int, default=3, help="kill, restore, kill, …")
    parser.add_argument("--quick", action="store_true", help="100 clients, 2 workers")
    parser.add_argument("--no-anchor", action="store_true", help="skip the polling run")
    parser.add_argument(
        "--flags",
        type=int,
        default=0,
        help="more flags in the environment; the stream also runs without gzip",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.workers = 100, 2
    loopback_only()
    print(f"# {machine()}; {load_average()}", file=sys.stderr)
    results = [run("stream", args.clients, args.workers, args.poll, args.rounds, gap=2.0, flags=args.flags)]
    if args.flags:
        results.append(
            run(
                "stream-identity",
                args.clients,
                args.workers,
                args.poll,
                args.rounds,
                gap=2.0,
                flags=args.flags,
            )
        )
    if not args.no_anchor:
        results.append(
            run(
                "poll",
                args.clients,
                args.workers,
                args.poll,
                args.rounds,
                gap=args.poll + 1,
                flags=args.flags,
            )
        )
    print(f"# {load_average()}", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"\nConfig fan-out: {args.clients} Python SDK clients over {args.workers} processes, one server")
    head = (
        f"{'mode':<22} {'round':<8} {'answered':>9} {'served':>7} {'p50':>9} {'p99':>9} {'last':>9}"
        f"  {'vs stream (last)':>16}"
    )
    print(head)
    print("-" * len(head))
    stream_last = [r.get("p100_ms", 0.0) for r in results[0]["rounds"]]
    for res in results:
        label = {"stream": "stream (/sdk/stream)", "stream-identity": "stream, no gzip"}.get(
            res["mode"], f"poll every {args.poll:g} s"
        )
        for i, r in enumerate(res["rounds"]):
            if not r.get("served"):
                print(f"{label:<22} {i + 1:<8} {0:>7}")
                continue
            vs = r["p100_ms"] / stream_last[i] if stream_last[i] else float("nan")
            print(
                f"{label:<22} {r['action']:<8} {r['request_ms']:>7.1f}ms {r['served']:>7} {r['p50_ms']:>7.1f}ms {r['p99_ms']:>7.1f}ms "
                f"{r['p100_ms']:>7.1f}ms  {vs:>15.1f}×"
            )
    stream = results[0]
    print(
        f"stream: {stream['server_streams']} streams open on the server, "
        f"{stream['server_kib_per_client']:.1f} KiB of server memory (RSS) per open stream; "
        f"all {args.clients} clients had their first config {stream['connect_seconds']:.1f} s after starting"
    )
    print(
        f"config: {stream['flags']} flags, {stream['config_bytes'] / 1024:.0f} KiB as JSON, "
        f"{stream['config_gzip_bytes'] / 1024:.0f} KiB gzipped; server CPU over each run: "
        + ", ".join(f"{res['mode']} {res['server_cpu_seconds']:.1f} s" for res in results)
    )
    if not args.no_anchor:
        print(
            f"polling costs {args.clients / args.poll:.0f} requests/s at rest; the stream, one heartbeat per 15 s each"
        )


if __name__ == "__main__":
    main()
