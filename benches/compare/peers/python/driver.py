"""python-etcd3 driver of etcd-blocking's side-by-side benchmark (benches/compare/benches/compare.rs).

Runs one workload against the given endpoints and prints one JSON line of results; see
benches/compare/peers/README.md for the protocol.
"""

import argparse
import json
import os
import threading
import time

import etcd3

KEYS = 1000


def cpu_seconds():
    # The process CPU clock (clock_gettime(CLOCK_PROCESS_CPUTIME_ID)): every thread.
    return time.process_time()


# Every request's deadline, the same for every client of the comparison (etcdctl's):
# python-etcd3 applies its client timeout to each request.
DEADLINE_S = 5

_trace_lock = threading.Lock()


def trace_line(line):
    """Prints one trace line at once, so that a driver killed while hung has told all."""
    with _trace_lock:
        print(line, flush=True)


def status(name):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def connect(endpoints, cacert=None, cert=None, key=None):
    # python-etcd3 0.12, the last release, takes one endpoint: it gets the first. With a
    # CA it speaks TLS (the scheme of an https:// endpoint is dropped).
    first = endpoints.split(",")[0].split("://")[-1]
    host, port = first.rsplit(":", 1)
    return etcd3.client(host=host, port=int(port), timeout=DEADLINE_S,
                        ca_cert=cacert, cert_cert=cert, cert_key=key)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoints", required=True)
    p.add_argument("--workload", default="put")
    p.add_argument("--callers", type=int, default=1)
    p.add_argument("--value-size", type=int, default=64)
    p.add_argument("--ops", type=int, default=2000)
    p.add_argument("--duration-ms", type=int, default=0)
    p.add_argument("--trace", action="store_true")
    p.add_argument("--cacert")
    p.add_argument("--cert")
    p.add_argument("--key")
    a = p.parse_args()

    client = connect(a.endpoints, a.cacert, a.cert, a.key)
    value = b"v" * a.value_size
    for i in range(KEYS):
        client.put("bench/k/%d" % i, value)

    def op(n):
        key = "bench/k/%d" % (n % KEYS)
        if a.workload == "put":
            client.put(key, value)
        elif a.workload == "get":
            client.get(key)
        elif a.workload == "get-serializable":
            client.get(key, serializable=True)
        elif a.workload == "txn":
            t = client.transactions
            client.transaction(
                compare=[t.version(key) > -1], success=[t.put(key, value)], failure=[]
            )
        else:
            raise ValueError("unknown workload " + a.workload)

    latencies = [[] for _ in range(a.callers)]
    errors = [0] * a.callers
    threads = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            threads[0] = max(threads[0], status("Threads"))
            done.wait(0.05)

    def caller(c):
        try:
            calls(c)
        finally:
            if a.trace:
                trace_line("D")

    def calls(c):
        n = c
        while True:
            if a.duration_ms > 0:
                if time.perf_counter() - started >= a.duration_ms / 1000.0:
                    return
            elif n >= a.ops:
                return
            at = time.time()
            t = time.perf_counter()
            ok = True
            try:
                op(n)
            except Exception:
                ok = False
            took = time.perf_counter() - t
            if a.trace:
                trace_line("R %d %d %d" % (at * 1e6, took * 1e6, ok))
            if ok:
                latencies[c].append(took)
            else:
                errors[c] += 1
            n += a.callers

    sampler = threading.Thread(target=sample)
    sampler.start()
    workers = [threading.Thread(target=caller, args=(c,)) for c in range(a.callers)]
    cpu_before = cpu_seconds()
    if a.trace:
        print("START %d" % (time.time() * 1e6), flush=True)
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_before
    done.set()
    sampler.join()

    all_lat = sorted(x for per in latencies for x in per)

    def pct(q):
        if not all_lat:
            return 0.0
        return all_lat[min(int(len(all_lat) * q), len(all_lat) - 1)] * 1e6

    print(json.dumps({
        "client": "python-etcd3",
        "workload": a.workload,
        "callers": a.callers,
        "value_size": a.value_size,
        "ops": len(all_lat),
        "errors": sum(errors),
        "seconds": elapsed,
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "cpu_seconds": cpu,
        "peak_rss_kib": status("VmHWM"),
        "threads": threads[0],
    }))


if __name__ == "__main__":
    main()
