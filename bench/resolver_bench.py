#!/usr/bin/env python3
"""Benchmark resolverd: start-up indexing of many enabled domains, then token look-ups under load.

Run as root from the repository (it uses the test lab: a throwaway PKI and a
private session libvirtd under the lab's unprivileged account)::

    .venv/bin/python bench/resolver_bench.py [--domains 1000] [--clients 100] [--seconds 20]

1. Defines ``--domains`` shut-off domains, each enabled like ``resolveradm
   enable`` does it (one libvirt secret per console, lcp metadata naming it),
   plus one running (paused) guest whose VNC token the clients look up.
2. Starts resolverd (gunicorn, one gthread worker, mTLS) and reports the time
   until /healthz says every connection is indexed, and the duration of that
   first full resync as resolverd measured it.
3. Runs ``--clients`` concurrent clients (spread over ``--processes``
   processes, one thread and one keep-alive mTLS connection each) for
   ``--seconds`` and reports look-ups per second and p50/p90/p99 latency.

The clients run on the same machine as resolverd, so both compete for CPUs.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import secrets
import ssl
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import libvirt  # noqa: E402

from lab import teardown  # noqa: E402
from lab.consoles import console_spec, enable  # noqa: E402
from lab.guests import GuestFactory, GuestImage  # noqa: E402
from lab.resolverd import Resolverd  # noqa: E402
from lab.standalone import start_lab  # noqa: E402
from resolverd import metadata  # noqa: E402

SHUT_OFF_DOMAIN = """<domain type='{kind}'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices><graphics type='vnc' autoport='yes' listen='127.0.0.1'/></devices>
</domain>"""


def define_enabled_domains(conn: libvirt.virConnect, count: int, kind: str) -> float:
    began = time.monotonic()
    for number in range(count):
        domain = conn.defineXML(SHUT_OFF_DOMAIN.format(kind=kind, name=f"bench-{number:05d}"))
        secret = conn.secretDefineXML("<secret ephemeral='no' private='no'><description>bench</description></secret>")
        secret.setValue(secrets.token_urlsafe(24).encode())
        consoles = [console_spec("vnc", secret_uuid=secret.UUIDString())]
        domain.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, metadata.render(consoles), metadata.PREFIX,
                           metadata.NAMESPACE, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    return time.monotonic() - began


def client_process(port: int, ca: str, cert: str, key: str, token: str, threads: int, start_at: float,
                   seconds: float, results: "multiprocessing.Queue[Tuple[List[float], int]]") -> None:
    latencies: List[float] = []
    failures = [0]
    lock = threading.Lock()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca)
    context.load_cert_chain(cert, key)
    path = f"/consoleresolver/token/{token}"

    def run() -> None:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
        connection.connect()  # the handshake is not part of a look-up's latency
        mine: List[float] = []
        bad = 0
        while time.time() < start_at:
            time.sleep(0.001)
        deadline = start_at + seconds
        while time.time() < deadline:
            began = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - began)
            bad += response.status != 200
        connection.close()
        with lock:
            latencies.extend(mine)
            failures[0] += bad

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put((latencies, failures[0]))


def load(server: Resolverd, token: str, clients: int, processes: int, seconds: float) -> Dict[str, float]:
    context = multiprocessing.get_context("spawn")
    results: "multiprocessing.Queue[Tuple[List[float], int]]" = context.Queue()
    pair = server.pki.proxyd_resolverd_client
    start_at = time.time() + 3.0
    shares = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    children = [context.Process(target=client_process, args=(
        server.port, str(server.pki.ca_cert), str(pair.cert), str(pair.key), token, share, start_at, seconds,
        results)) for share in shares if share]
    for child in children:
        child.start()
    latencies: List[float] = []
    failures = 0
    for _ in children:
        mine, bad = results.get(timeout=seconds + 120)
        latencies += mine
        failures += bad
    for child in children:
        child.join()
    latencies.sort()
    return {
        "lookups": len(latencies), "failures": failures, "lookups_per_second": len(latencies) / seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p90_ms": 1000 * latencies[int(len(latencies) * 0.90)],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "mean_ms": 1000 * statistics.fmean(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=1000, help="enabled shut-off domains (default: 1000)")
    parser.add_argument("--clients", type=int, default=100, help="concurrent clients (default: 100)")
    parser.add_argument("--processes", type=int, default=4, help="client processes (default: 4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="load duration (default: 20)")
    parser.add_argument("--log-level", default="info", help="resolverd's --log-level (default: info)")
    parser.add_argument("--threads", type=int, default=None, help="resolverd's --threads (default: its own)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    lab = start_lab()
    run_dir, pki, daemon, kind = lab.run_dir, lab.pki, lab.libvirtd, lab.domain_type
    conn = daemon.connection()

    define_seconds = define_enabled_domains(conn, args.domains, kind)
    factory = GuestFactory(daemon, GuestImage(run_dir / "image"), pki, run_dir / "disks", kind)
    teardown.register(factory.cleanup)
    guest = factory(consoles={"vnc"}, wait=False)
    (token,) = enable(conn, guest, console_spec("vnc"))
    guest.domain.suspend()  # paused QEMU keeps its ports (the token resolves) and leaves the CPUs to the benchmark

    server = Resolverd(run_dir, pki, [daemon.uri], log_level=args.log_level,
                       extra_args=["--threads", str(args.threads)] if args.threads else [])
    teardown.register(server.stop)
    began = time.monotonic()
    server.start(timeout=600)
    ready_seconds = time.monotonic() - began
    indexed = {
        "domains": server.metric("resolverd_index_domains"), "tokens": server.metric("resolverd_index_tokens"),
        "first_resync_seconds": server.metric("resolverd_resync_seconds"),
        "start_to_healthy_seconds": ready_seconds, "define_seconds": define_seconds,
    }
    assert server.lookup(token).status_code == 200, server.log_tail()
    lookups = load(server, token, args.clients, args.processes, args.seconds)
    results = {"cpus": os.cpu_count(), "domains_defined": args.domains + 1, "index": indexed,
               "clients": args.clients, "client_processes": args.processes, "seconds": args.seconds,
               "resolverd_log_level": args.log_level, "resolverd_threads": args.threads or "default",
               "load": lookups}
    teardown.run_all()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"machine: {results['cpus']} CPUs (clients and resolverd share them)")
    print(f"start-up: {args.domains} enabled shut-off domains + 1 running (paused) guest "
          f"(defined in {define_seconds:.1f} s)")
    print(f"  indexed {indexed['domains']:.0f} domains / {indexed['tokens']:.0f} tokens; first full resync "
          f"{indexed['first_resync_seconds']:.2f} s; process start to healthy {ready_seconds:.2f} s")
    print(f"look-ups: {args.clients} keep-alive mTLS clients in {args.processes} processes for "
          f"{args.seconds:.0f} s, resolverd --log-level {args.log_level}")
    print(f"  {lookups['lookups']:.0f} look-ups, {lookups['failures']:.0f} not 200, "
          f"{lookups['lookups_per_second']:.0f}/s; latency p50 {lookups['p50_ms']:.1f} ms, "
          f"p90 {lookups['p90_ms']:.1f} ms, p99 {lookups['p99_ms']:.1f} ms, mean {lookups['mean_ms']:.1f} ms")


if __name__ == "__main__":
    main()
