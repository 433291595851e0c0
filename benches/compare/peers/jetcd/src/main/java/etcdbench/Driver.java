// The jetcd driver of the side-by-side benchmark: the protocol of ../README.md, with
// jetcd used the way its README shows (a Client from endpoints, its KV client, and a
// blocking get() on each CompletableFuture), one platform thread per caller.
package etcdbench;

import io.etcd.jetcd.ByteSequence;
import io.etcd.jetcd.Client;
import io.etcd.jetcd.KV;
import io.etcd.jetcd.Lease;
import io.etcd.jetcd.Election;
import io.etcd.jetcd.Lock;
import io.etcd.jetcd.election.LeaderKey;
import io.etcd.jetcd.lease.LeaseKeepAliveResponse;
import io.grpc.stub.StreamObserver;
import io.etcd.jetcd.Watch;
import io.etcd.jetcd.options.WatchOption;
import io.etcd.jetcd.watch.WatchEvent;
import io.etcd.jetcd.op.Cmp;
import io.etcd.jetcd.op.CmpTarget;
import io.etcd.jetcd.op.Op;
import io.etcd.jetcd.options.GetOption;
import io.etcd.jetcd.options.PutOption;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.atomic.AtomicInteger;

public final class Driver {
    private static final int KEYS = 1000;
    private static final long WARM_UP_NANOS = 2_000_000_000L;
    /** Every request's deadline, the same for every client of the comparison (etcdctl's). */
    private static final long DEADLINE_SECONDS = 5;
    /** CPU nanoseconds of the callers that ended, by OS thread id (see cpuSeconds). */
    private static final Map<String, Long> RETIRED = new java.util.concurrent.ConcurrentHashMap<>();

    /**
     * Waits for `future` at most the deadline. jetcd has no per-request deadline of its own:
     * its users bound the wait on the future and cancel it, as this does.
     */
    private static <T> T within(CompletableFuture<T> future) throws Exception {
        try {
            return future.get(DEADLINE_SECONDS, TimeUnit.SECONDS);
        } catch (TimeoutException e) {
            future.cancel(true);
            throw e;
        }
    }

    /** Prints one trace line at once, so that a driver killed while hung has told all. */
    private static synchronized void traceLine(String line) {
        System.out.println(line);
        System.out.flush();
    }
    /** One request of the workload on one key, blocking until it is done. */
    private interface Operation {
        void run(ByteSequence key) throws Exception;
    }

    /**
     * Runs the workload untimed for `nanos` with `callers` threads, and returns how many
     * requests succeeded and how many failed (the orchestrator counts the writes).
     */
    private static long[] warmUp(Operation op, ByteSequence[] keys, int callers, long nanos)
            throws InterruptedException {
        long until = System.nanoTime() + nanos;
        AtomicLong ok = new AtomicLong();
        AtomicLong failed = new AtomicLong();
        Thread[] threads = new Thread[callers];
        for (int c = 0; c < callers; c++) {
            final int caller = c;
            threads[c] = new Thread(() -> {
                for (int n = caller; System.nanoTime() < until; n += callers) {
                    try {
                        op.run(keys[n % KEYS]);
                        ok.incrementAndGet();
                    } catch (Exception e) {
                        failed.incrementAndGet();
                    }
                }
            }, "warm-up-" + c);
            threads[c].start();
        }
        for (Thread t : threads) {
            t.join();
        }
        return new long[] {ok.get(), failed.get()};
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> flags = new HashMap<>();
        for (String arg : args) {
            if (!arg.startsWith("--")) {
                fail("unexpected argument " + arg);
            }
            int eq = arg.indexOf('=');
            if (eq < 0) {
                flags.put(arg.substring(2), "true");
            } else {
                flags.put(arg.substring(2, eq), arg.substring(eq + 1));
            }
        }
        String endpoints = flags.getOrDefault("endpoints", "");
        String workload = flags.getOrDefault("workload", "put");
        int callers = Integer.parseInt(flags.getOrDefault("callers", "1"));
        int valueSize = Integer.parseInt(flags.getOrDefault("value-size", "64"));
        int ops = Integer.parseInt(flags.getOrDefault("ops", "2000"));
        long durationMs = Long.parseLong(flags.getOrDefault("duration-ms", "0"));
        boolean trace = flags.containsKey("trace");
        if (!List.of("put", "get", "get-serializable", "txn", "watch", "watch-fault", "keepalive", "lock", "election", "expiry", "snapshot", "mirror")
                .contains(workload)) {
            fail("unknown workload " + workload);
        }

        String[] urls = Arrays.stream(endpoints.split(","))
                .filter(e -> !e.isEmpty())
                .map(e -> e.contains("://") ? e : "http://" + e)
                .toArray(String[]::new);
        io.etcd.jetcd.ClientBuilder builder = Client.builder().endpoints(urls);
        String cacert = flags.get("cacert");
        if (cacert != null) {
            // TLS, as jetcd's users set it: netty's context builder, with a client
            // certificate when one is given.
            String cert = flags.get("cert");
            String key = flags.get("key");
            builder = builder.sslContext(b -> {
                b.trustManager(new java.io.File(cacert));
                if (cert != null && key != null) {
                    b.keyManager(new java.io.File(cert), new java.io.File(key));
                }
            });
        }
        String user = flags.get("user");
        if (user != null) {
            builder = builder.user(ByteSequence.from(user, StandardCharsets.UTF_8))
                    .password(ByteSequence.from(flags.getOrDefault("password", ""), StandardCharsets.UTF_8));
        }
        Client client = builder.build();
        if (workload.equals("snapshot")) {
            snapshotBench(client, flags.getOrDefault("out", "snapshot.db"));
            Runtime.getRuntime().halt(0);
        }
        if (workload.equals("mirror")) {
            mirrorBench(client, flags.getOrDefault("prefix", "mirror/"));
            Runtime.getRuntime().halt(0);
        }
        if (workload.equals("expiry")) {
            expiryBench(client, durationMs, Long.parseLong(flags.getOrDefault("idle-ms", "0")),
                    Integer.parseInt(flags.getOrDefault("ttl-s", "3")));
            Runtime.getRuntime().halt(0);
        }
        if (workload.equals("watch")) {
            watchBench(client, Integer.parseInt(flags.getOrDefault("watchers", "1")),
                    Integer.parseInt(flags.getOrDefault("puts", "300")), flags.containsKey("distinct"));
            Runtime.getRuntime().halt(0);
        }
        if (workload.equals("watch-fault")) {
            watchFault(client, durationMs);
            Runtime.getRuntime().halt(0);
        }
        if (workload.equals("keepalive")) {
            keepAliveBench(client, Integer.parseInt(flags.getOrDefault("leases", "10000")),
                    Integer.parseInt(flags.getOrDefault("ttl-s", "10")));
            Runtime.getRuntime().halt(0);
        }
        if (workload.equals("lock")) {
            lockBench(client, callers, ops);
            Runtime.getRuntime().halt(0);
        }
        if (workload.equals("election")) {
            electionBench(client, ops);
            Runtime.getRuntime().halt(0);
        }
        KV kv = client.getKVClient();
        ByteSequence value = ByteSequence.from("v".repeat(valueSize), StandardCharsets.UTF_8);
        ByteSequence[] keys = new ByteSequence[KEYS];
        for (int i = 0; i < KEYS; i++) {
            keys[i] = ByteSequence.from("bench/k/" + i, StandardCharsets.UTF_8);
            try {
                kv.put(keys[i], value).get();
            } catch (Exception e) {
                fail("fill: " + e);
            }
        }
        GetOption serializable = GetOption.builder().withSerializable(true).build();
        Operation op = key -> {
            switch (workload) {
                case "put" -> within(kv.put(key, value));
                case "get" -> within(kv.get(key));
                case "get-serializable" -> within(kv.get(key, serializable));
                default -> within(kv.txn()
                        .If(new Cmp(key, Cmp.Op.GREATER, CmpTarget.version(-1)))
                        .Then(Op.put(key, value, PutOption.DEFAULT))
                        .commit());
            }
        };
        // The JVM compiles the hot paths after some thousands of calls: the timed phase
        // measures jetcd warm, as in a service that has run a while.
        long[] warm = warmUp(op, keys, callers, WARM_UP_NANOS);

        AtomicInteger threads = new AtomicInteger();
        AtomicBoolean done = new AtomicBoolean();
        Thread sampler = new Thread(() -> {
            while (!done.get()) {
                threads.accumulateAndGet(status("Threads"), Math::max);
                try {
                    Thread.sleep(50);
                } catch (InterruptedException e) {
                    return;
                }
            }
        });
        sampler.setDaemon(true);
        sampler.start();

        long[][] latencies = new long[callers][];
        int[] counts = new int[callers];
        int[] errors = new int[callers];
        for (int c = 0; c < callers; c++) {
            latencies[c] = new long[1024];
        }
        double cpuBefore = cpuSeconds();
        long startedNanos = System.nanoTime();
        long startedMicros = nowMicros();
        if (trace) {
            System.out.println("START " + startedMicros);
        }
        Thread[] workers = new Thread[callers];
        for (int c = 0; c < callers; c++) {
            final int caller = c;
            workers[c] = new Thread(() -> {
                for (int n = caller; ; n += callers) {
                    if (durationMs > 0) {
                        if (System.nanoTime() - startedNanos >= durationMs * 1_000_000L) {
                            break;
                        }
                    } else if (n >= ops) {
                        break;
                    }
                    ByteSequence key = keys[n % KEYS];
                    long atMicros = nowMicros();
                    long t = System.nanoTime();
                    boolean ok = true;
                    try {
                        op.run(key);
                    } catch (Exception e) {
                        ok = false;
                    }
                    long took = System.nanoTime() - t;
                    if (trace) {
                        traceLine("R " + atMicros + " " + took / 1000 + " " + (ok ? 1 : 0));
                    }
                    if (!ok) {
                        errors[caller]++;
                        continue;
                    }
                    if (counts[caller] == latencies[caller].length) {
                        latencies[caller] = Arrays.copyOf(latencies[caller], counts[caller] * 2);
                    }
                    latencies[caller][counts[caller]++] = took;
                }
                retire();
                if (trace) {
                    traceLine("D");
                }
            }, "caller-" + c);
            workers[c].start();
        }
        for (Thread worker : workers) {
            worker.join();
        }
        double seconds = (System.nanoTime() - startedNanos) / 1e9;
        double cpu = cpuSeconds() - cpuBefore;
        done.set(true);

        int total = 0;
        int errs = 0;
        for (int c = 0; c < callers; c++) {
            total += counts[c];
            errs += errors[c];
        }
        long[] all = new long[total];
        int at = 0;
        for (int c = 0; c < callers; c++) {
            System.arraycopy(latencies[c], 0, all, at, counts[c]);
            at += counts[c];
        }
        Arrays.sort(all);
        System.out.println(String.format(java.util.Locale.ROOT,
                "{\"client\":\"jetcd\",\"workload\":\"%s\",\"callers\":%d,\"value_size\":%d,"
                        + "\"ops\":%d,\"errors\":%d,\"seconds\":%.6f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
                        + "\"p999_us\":%.1f,\"cpu_seconds\":%.6f,\"peak_rss_kib\":%d,\"threads\":%d,"
                        + "\"warmup_ops\":%d,\"warmup_errors\":%d}",
                workload, callers, valueSize, total, errs, seconds, pct(all, 0.50), pct(all, 0.99),
                pct(all, 0.999), cpu, status("VmHWM"), threads.get(), warm[0], warm[1]));
        System.out.flush();
        // client.close() waits for jetcd's executors; the numbers are out, so do not wait.
        Runtime.getRuntime().halt(0);
    }

    /**
     * Creates `watchers` watches on the prefix wbench/ (timed until every one has its
     * created notification), then times `puts` sequential puts, each until every watch's
     * listener has had its event. The put loop runs once untimed first, for the JIT.
     */
    private static void watchBench(Client client, int watchers, int puts, boolean distinct)
            throws Exception {
        Watch watch = client.getWatchClient();
        KV kv = client.getKVClient();
        ByteSequence prefix = ByteSequence.from("wbench/", StandardCharsets.UTF_8);
        WatchOption shared = WatchOption.builder().isPrefix(true).withCreateNotify(true).build();
        CountDownLatch created = new CountDownLatch(watchers);
        AtomicReference<CountDownLatch> pending = new AtomicReference<>(new CountDownLatch(0));
        List<Watch.Watcher> all = new ArrayList<>();
        long started = System.nanoTime();
        for (int i = 0; i < watchers; i++) {
            // With `distinct`, watch i covers [wbench/, wbench/~i): a range of its own that
            // holds every key put.
            WatchOption option = distinct
                    ? WatchOption.builder()
                            .withRange(ByteSequence.from("wbench/~" + i, StandardCharsets.UTF_8))
                            .withCreateNotify(true).build()
                    : shared;
            all.add(watch.watch(prefix, option, Watch.listener(response -> {
                if (response.isCreatedNotify()) {
                    created.countDown();
                }
                for (int e = 0; e < response.getEvents().size(); e++) {
                    pending.get().countDown();
                }
            })));
        }
        if (!created.await(120, TimeUnit.SECONDS)) {
            fail("watches not created: " + created.getCount() + " left");
        }
        double createMs = (System.nanoTime() - started) / 1e6;
        int rss = status("VmRSS");
        int threads = status("Threads");
        long[] latencies = new long[puts];
        double cpu = 0;
        double seconds = 0;
        for (int round = 0; round < 2; round++) {
            double cpuBefore = cpuSeconds();
            long phase = System.nanoTime();
            for (int i = 0; i < puts; i++) {
                CountDownLatch latch = new CountDownLatch(watchers);
                pending.set(latch);
                long t = System.nanoTime();
                kv.put(ByteSequence.from("wbench/" + round + "/" + i, StandardCharsets.UTF_8),
                        ByteSequence.from("v", StandardCharsets.UTF_8)).get();
                if (!latch.await(10, TimeUnit.SECONDS)) {
                    fail("events missing: " + latch.getCount());
                }
                latencies[i] = System.nanoTime() - t;
            }
            seconds = (System.nanoTime() - phase) / 1e9;
            cpu = cpuSeconds() - cpuBefore;
        }
        Arrays.sort(latencies);
        System.out.println(String.format(java.util.Locale.ROOT,
                "{\"client\":\"jetcd\",\"workload\":\"watch\",\"watchers\":%d,\"puts\":%d,"
                        + "\"create_ms\":%.3f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
                        + "\"events_per_sec\":%.1f,\"cpu_seconds\":%.3f,\"rss_kib\":%d,\"threads\":%d}",
                watchers, puts, createMs, pct(latencies, 0.50), pct(latencies, 0.99),
                pct(latencies, 0.999), (double) watchers * puts / seconds, cpu, rss, threads));
        System.out.flush();
    }

    /**
     * Watches the prefix wfault/, prints READY once created, then a line
     * "E <unix us> <revision of the response's last event>" per response with events, for
     * `durationMs`. jetcd resumes a broken watch by itself.
     */
    private static void watchFault(Client client, long durationMs) throws Exception {
        ByteSequence prefix = ByteSequence.from("wfault/", StandardCharsets.UTF_8);
        WatchOption option = WatchOption.builder().isPrefix(true).withCreateNotify(true).build();
        CountDownLatch created = new CountDownLatch(1);
        client.getWatchClient().watch(prefix, option, Watch.listener(response -> {
            if (response.isCreatedNotify()) {
                created.countDown();
            }
            List<WatchEvent> events = response.getEvents();
            if (!events.isEmpty()) {
                long revision = events.get(events.size() - 1).getKeyValue().getModRevision();
                synchronized (System.out) {
                    System.out.println("E " + nowMicros() + " " + revision);
                    System.out.flush();
                }
            }
        }));
        if (!created.await(60, TimeUnit.SECONDS)) {
            fail("watch not created");
        }
        synchronized (System.out) {
            System.out.println("READY");
            System.out.flush();
        }
        Thread.sleep(durationMs);
    }

    /**
     * Grants `leases` leases of `ttlS` seconds from 8 threads and keeps each alive with
     * jetcd's keepAlive (its own renewal loop, one stream for all), then measures the
     * process's CPU over three TTLs.
     */
    private static void keepAliveBench(Client client, int leases, int ttlS) throws Exception {
        Lease lease = client.getLeaseClient();
        long started = System.nanoTime();
        Thread[] granters = new Thread[8];
        for (int w = 0; w < 8; w++) {
            final int worker = w;
            granters[w] = new Thread(() -> {
                for (int i = worker; i < leases; i += 8) {
                    try {
                        long id = lease.grant(ttlS).get().getID();
                        lease.keepAlive(id, new StreamObserver<LeaseKeepAliveResponse>() {
                            public void onNext(LeaseKeepAliveResponse r) {}
                            public void onError(Throwable t) {}
                            public void onCompleted() {}
                        });
                    } catch (Exception e) {
                        fail("grant: " + e);
                    }
                }
            });
            granters[w].start();
        }
        for (Thread t : granters) {
            t.join();
        }
        double setupMs = (System.nanoTime() - started) / 1e6;
        double cpuBefore = cpuSeconds();
        long window = System.nanoTime();
        Thread.sleep(3L * ttlS * 1000);
        System.out.println(String.format(java.util.Locale.ROOT,
                "{\"client\":\"jetcd\",\"workload\":\"keepalive\",\"leases\":%d,\"setup_ms\":%.3f,"
                        + "\"cpu_seconds\":%.3f,\"seconds\":%.3f,\"rss_kib\":%d,\"threads\":%d}",
                leases, setupMs, cpuSeconds() - cpuBefore, (System.nanoTime() - window) / 1e9,
                status("VmRSS"), status("Threads")));
        System.out.flush();
    }

    /**
     * `callers` threads, each with a lease of its own (60 s, longer than the run), share
     * `ops` lock + unlock pairs on the lock bench-lock (etcd's lock service), after 200
     * pairs untimed for the JIT.
     */
    private static void lockBench(Client client, int callers, int ops) throws Exception {
        Lock lock = client.getLockClient();
        ByteSequence name = ByteSequence.from("bench-lock", StandardCharsets.UTF_8);
        long[][] latencies = new long[callers][];
        double[] cpu = new double[1];
        double[] seconds = new double[1];
        for (int round = 0; round < 2; round++) {
            final int total = round == 0 ? Math.min(200, ops) : ops;
            Thread[] workers = new Thread[callers];
            double cpuBefore = cpuSeconds();
            long started = System.nanoTime();
            for (int c = 0; c < callers; c++) {
                final int caller = c;
                workers[c] = new Thread(() -> {
                    try {
                        long leaseId = client.getLeaseClient().grant(60).get().getID();
                        int mine = 0;
                        long[] own = new long[total / callers + 1];
                        for (int n = caller; n < total; n += callers) {
                            long t = System.nanoTime();
                            ByteSequence key = lock.lock(name, leaseId).get().getKey();
                            lock.unlock(key).get();
                            own[mine++] = System.nanoTime() - t;
                        }
                        latencies[caller] = Arrays.copyOf(own, mine);
                        client.getLeaseClient().revoke(leaseId).get();
                    } catch (Exception e) {
                        fail("lock: " + e);
                    }
                });
                workers[c].start();
            }
            for (Thread t : workers) {
                t.join();
            }
            seconds[0] = (System.nanoTime() - started) / 1e9;
            cpu[0] = cpuSeconds() - cpuBefore;
        }
        long[] all = Arrays.stream(latencies).flatMapToLong(Arrays::stream).sorted().toArray();
        System.out.println(String.format(java.util.Locale.ROOT,
                "{\"client\":\"jetcd\",\"workload\":\"lock\",\"callers\":%d,\"value_size\":0,"
                        + "\"ops\":%d,\"errors\":0,\"seconds\":%.6f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
                        + "\"p999_us\":%.1f,\"cpu_seconds\":%.6f,\"peak_rss_kib\":%d,\"threads\":%d,"
                        + "\"warmup_ops\":%d,\"warmup_errors\":%d}",
                callers, all.length, seconds[0], pct(all, 0.50), pct(all, 0.99), pct(all, 0.999),
                cpu[0], status("VmHWM"), status("Threads"), Math.min(200, ops), 0));
        System.out.flush();
    }

    /**
     * `ops` rounds of a handover through etcd's election service, after 20 untimed for the
     * JIT: candidate a leads bench-election, candidate b campaigns behind it, a's lease is
     * revoked; the latency runs from the revoke sent to b's campaign returning. Each
     * candidate has a lease of its own (60 s), new every round.
     */
    private static void electionBench(Client client, int ops) throws Exception {
        Election election = client.getElectionClient();
        Lease lease = client.getLeaseClient();
        KV kv = client.getKVClient();
        ByteSequence name = ByteSequence.from("bench-election", StandardCharsets.UTF_8);
        ByteSequence prefix = ByteSequence.from("bench-election/", StandardCharsets.UTF_8);
        long[] all = new long[0];
        double cpu = 0;
        double seconds = 0;
        for (int round = 0; round < 2; round++) {
            int total = round == 0 ? Math.min(20, ops) : ops;
            long[] own = new long[total];
            double cpuBefore = cpuSeconds();
            long started = System.nanoTime();
            for (int n = 0; n < total; n++) {
                long a = lease.grant(60).get().getID();
                long b = lease.grant(60).get().getID();
                election.campaign(name, a, ByteSequence.from("a", StandardCharsets.UTF_8)).get();
                long[] wonAt = new long[1];
                java.util.concurrent.CompletableFuture<LeaderKey> won = election
                        .campaign(name, b, ByteSequence.from("b", StandardCharsets.UTF_8))
                        .thenApply(r -> {
                            wonAt[0] = System.nanoTime();
                            return r.getLeader();
                        });
                while (kv.get(prefix, GetOption.builder().isPrefix(true).withCountOnly(true).build())
                        .get().getCount() < 2) {
                    // Until b stands behind a.
                }
                long t = System.nanoTime();
                lease.revoke(a).get();
                LeaderKey leader = won.get();
                own[n] = wonAt[0] - t;
                election.resign(leader).get();
                lease.revoke(b).get();
            }
            seconds = (System.nanoTime() - started) / 1e9;
            cpu = cpuSeconds() - cpuBefore;
            all = own;
        }
        Arrays.sort(all);
        System.out.println(String.format(java.util.Locale.ROOT,
                "{\"client\":\"jetcd\",\"workload\":\"election\",\"callers\":1,\"value_size\":0,"
                        + "\"ops\":%d,\"errors\":0,\"seconds\":%.6f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
                        + "\"p999_us\":%.1f,\"cpu_seconds\":%.6f,\"peak_rss_kib\":%d,\"threads\":%d,"
                        + "\"warmup_ops\":%d,\"warmup_errors\":%d}",
                all.length, seconds, pct(all, 0.50), pct(all, 0.99), pct(all, 0.999),
                cpu, status("VmHWM"), status("Threads"), Math.min(20, ops), 0));
        System.out.flush();
    }

    private static double pct(long[] sorted, double p) {
        if (sorted.length == 0) {
            return 0;
        }
        int i = Math.min((int) (sorted.length * p), sorted.length - 1);
        return sorted[i] / 1000.0;
    }

    private static long nowMicros() {
        java.time.Instant now = java.time.Instant.now();
        return now.getEpochSecond() * 1_000_000L + now.getNano() / 1000;
    }

    /** This process's user + system CPU time, from /proc/self/stat. */
    /**
     * This process's CPU seconds, in nanoseconds: the JDK 17 process figure
     * (OperatingSystemMXBean) counts 10 ms ticks, so this adds up every thread's own CPU
     * clock (/proc/self/task/N/schedstat, which counts the JVM's own threads too), plus
     * what the measured callers used before they ended. A JVM thread that ends during the
     * phase other than a caller is not counted (the JIT's, rarely).
     */
    private static double cpuSeconds() {
        long total = 0;
        for (long nanos : RETIRED.values()) {
            total += nanos;
        }
        try (var tasks = Files.list(Path.of("/proc/self/task"))) {
            for (Path task : (Iterable<Path>) tasks::iterator) {
                // An ended caller may linger here a moment after join(): counted once.
                if (!RETIRED.containsKey(task.getFileName().toString())) {
                    total += threadCpuNanos(task.resolve("schedstat"));
                }
            }
        } catch (IOException e) {
            return 0;
        }
        return total / 1e9;
    }

    /** Called by a caller as it ends: keeps its CPU time, under its OS thread id. */
    private static void retire() {
        try {
            // /proc/thread-self links to "<pid>/task/<tid>".
            Path self = Files.readSymbolicLink(Path.of("/proc/thread-self"));
            RETIRED.put(self.getFileName().toString(),
                    threadCpuNanos(Path.of("/proc/thread-self/schedstat")));
        } catch (IOException e) {
            // Then its time is not counted; cpuSeconds says so in its doc.
        }
    }

    /** The CPU nanoseconds in a thread's schedstat (0 once it has ended). */
    private static long threadCpuNanos(Path schedstat) {
        try {
            return Long.parseLong(Files.readString(schedstat).trim().split(" ")[0]);
        } catch (IOException | NumberFormatException e) {
            return 0;
        }
    }

    /** A kB or count field of /proc/self/status. */
    private static int status(String name) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith(name + ":")) {
                    return Integer.parseInt(line.substring(name.length() + 1).trim().split("\\s+")[0]);
                }
            }
        } catch (IOException | NumberFormatException e) {
            return 0;
        }
        return 0;
    }

    private static void fail(String message) {
        System.err.println(message);
        System.exit(1);
    }

    private static ByteSequence bytes(String s) {
        return ByteSequence.from(s, StandardCharsets.UTF_8);
    }

    /**
     * The token expiry load (see peer_expiry/mod.rs): a watch of exp/ and a lease of `ttlS`
     * seconds kept alive with jetcd's keepAlive; then cycles of 300 ms of puts of new keys
     * each read back, a new watch of late/<cycle>/ awaited created with a put under it and
     * its event awaited, and an idle time; then counts what the first watch lost or
     * repeated and whether the lease is still there.
     */
    private static void expiryBench(Client client, long durationMs, long idleMs, int ttlS) throws Exception {
        double cpuBefore = cpuSeconds();
        long started = System.nanoTime();
        List<String> seen = java.util.Collections.synchronizedList(new ArrayList<>());
        CountDownLatch created = new CountDownLatch(1);
        client.getWatchClient().watch(bytes("exp/"),
                WatchOption.builder().isPrefix(true).withCreateNotify(true).build(),
                Watch.listener(response -> {
                    if (response.isCreatedNotify()) {
                        created.countDown();
                    }
                    for (WatchEvent e : response.getEvents()) {
                        seen.add(e.getKeyValue().getKey().toString(StandardCharsets.UTF_8));
                    }
                }, error -> System.err.println("expiry: the watch of exp/: " + error)));
        if (!created.await(DEADLINE_SECONDS, TimeUnit.SECONDS)) {
            fail("watch not created");
        }
        Lease lease = client.getLeaseClient();
        long id = within(lease.grant(ttlS)).getID();
        lease.keepAlive(id, new StreamObserver<LeaseKeepAliveResponse>() {
            public void onNext(LeaseKeepAliveResponse r) {}
            public void onError(Throwable t) {
                System.err.println("expiry: keepalive: " + t);
            }
            public void onCompleted() {}
        });
        KV kv = client.getKVClient();
        long[] counts = new long[4]; // ops, errors, watches, watch errors
        List<String> acknowledged = new ArrayList<>();
        long n = 0;
        for (int cycle = 0; (System.nanoTime() - started) / 1_000_000 < durationMs; cycle++) {
            long burst = System.nanoTime() + 300_000_000L;
            while (System.nanoTime() < burst) {
                String key = String.format("exp/%08d", n++);
                try {
                    within(kv.put(bytes(key), bytes("v")));
                    counts[0]++;
                    acknowledged.add(key);
                } catch (Exception e) {
                    counts[1]++;
                    System.err.println("expiry: a call failed: " + e);
                }
                try {
                    within(kv.get(bytes(key)));
                    counts[0]++;
                } catch (Exception e) {
                    counts[1]++;
                    System.err.println("expiry: a call failed: " + e);
                }
            }
            counts[2]++;
            if (!lateWatch(client, "late/" + cycle + "/", counts)) {
                counts[3]++;
            }
            Thread.sleep(idleMs);
        }
        long until = System.nanoTime() + DEADLINE_SECONDS * 1_000_000_000L;
        int before = -1;
        while (seen.size() < acknowledged.size() && System.nanoTime() < until) {
            if (seen.size() != before) {
                before = seen.size();
                until = System.nanoTime() + DEADLINE_SECONDS * 1_000_000_000L;
            }
            Thread.sleep(10);
        }
        Map<String, Integer> times = new HashMap<>();
        long repeated = 0;
        String last = null;
        synchronized (seen) {
            for (String k : seen) {
                int t = times.merge(k, 1, Integer::sum);
                if (t > 1 || (last != null && last.compareTo(k) >= 0)) {
                    repeated++;
                }
                last = k;
            }
        }
        long lost = acknowledged.stream().filter(k -> !times.containsKey(k)).count();
        int lapsed = 1;
        try {
            if (within(lease.timeToLive(id, io.etcd.jetcd.options.LeaseOption.DEFAULT)).getTTL() > 0) {
                lapsed = 0;
            }
        } catch (Exception e) {
            System.err.println("expiry: the lease's time to live: " + e);
        }
        System.out.printf(java.util.Locale.ROOT,
                "{\"client\":\"jetcd\",\"workload\":\"expiry\",\"ops\":%d,\"errors\":%d,"
                + "\"watches\":%d,\"watch_errors\":%d,\"lost\":%d,\"repeated\":%d,\"lapsed\":%d,"
                + "\"seconds\":%f,\"cpu_seconds\":%f}%n",
                counts[0], counts[1], counts[2], counts[3], lost, repeated, lapsed,
                (System.nanoTime() - started) / 1e9, cpuSeconds() - cpuBefore);
        System.out.flush();
    }

    /**
     * A new watch of `prefix`, awaited created; a put under it and its event awaited, each
     * within the deadline. Whether all of it worked.
     */
    private static boolean lateWatch(Client client, String prefix, long[] counts) throws Exception {
        CountDownLatch created = new CountDownLatch(1);
        CountDownLatch event = new CountDownLatch(1);
        try (Watch.Watcher watcher = client.getWatchClient().watch(bytes(prefix),
                WatchOption.builder().isPrefix(true).withCreateNotify(true).build(),
                Watch.listener(response -> {
                    if (response.isCreatedNotify()) {
                        created.countDown();
                    }
                    if (!response.getEvents().isEmpty()) {
                        event.countDown();
                    }
                }, error -> System.err.println("expiry: watch " + prefix + ": " + error)))) {
            if (!created.await(DEADLINE_SECONDS, TimeUnit.SECONDS)) {
                System.err.println("expiry: watch " + prefix + " not created in time");
                return false;
            }
            try {
                within(client.getKVClient().put(bytes(prefix + "k"), bytes("x")));
                counts[0]++;
            } catch (Exception e) {
                counts[1]++;
                System.err.println("expiry: a call failed: " + e);
                return false;
            }
            if (!event.await(DEADLINE_SECONDS, TimeUnit.SECONDS)) {
                System.err.println("expiry: no event on watch " + prefix + " in time");
                return false;
            }
            return true;
        }
    }

    /**
     * Saves a snapshot to `out` with jetcd's Maintenance.snapshot(OutputStream), into a
     * buffered file stream, and reports the time, the bytes and the CPU and peak RSS.
     */
    private static void snapshotBench(Client client, String out) throws Exception {
        double cpuBefore = cpuSeconds();
        long started = System.nanoTime();
        long bytes;
        try (java.io.OutputStream file = new java.io.BufferedOutputStream(
                new java.io.FileOutputStream(out), 1 << 16)) {
            bytes = client.getMaintenanceClient().snapshot(file).get(10, TimeUnit.MINUTES);
        }
        double seconds = (System.nanoTime() - started) / 1e9;
        System.out.printf(java.util.Locale.ROOT,
                "{\"client\":\"jetcd\",\"workload\":\"snapshot\",\"bytes\":%d,\"seconds\":%f,"
                + "\"cpu_seconds\":%f,\"peak_rss_kib\":%d}%n",
                bytes, seconds, cpuSeconds() - cpuBefore, status("VmHWM"));
        System.out.flush();
    }

    /**
     * Keeps a local copy of `prefix` the way jetcd's users must, jetcd having no mirror:
     * the prefix read at one revision a page of 1,000 keys at a time (one get of a large
     * prefix passes gRPC's 4 MiB message limit) into a ConcurrentHashMap, then a watch
     * from the revision after whose listener applies each event. It prints READY once
     * the copy is in; the orchestrator then writes updates under prefix + "u/" whose
     * values are the wall-clock time of their sending (Unix nanoseconds), and prefix +
     * "done" last. Put to visible is the time from that stamp to the event's application;
     * CPU is counted from ready to done.
     */
    private static void mirrorBench(Client client, String prefix) throws Exception {
        KV kv = client.getKVClient();
        int rssBefore = status("VmRSS");
        long started = System.nanoTime();
        Map<String, byte[]> local = new java.util.concurrent.ConcurrentHashMap<>();
        byte[] raw = prefix.getBytes(StandardCharsets.UTF_8);
        byte[] endRaw = Arrays.copyOf(raw, raw.length);
        endRaw[endRaw.length - 1]++;
        ByteSequence end = ByteSequence.from(endRaw);
        ByteSequence from = bytes(prefix);
        long revision = 0;
        while (true) {
            GetOption.Builder page = GetOption.builder().withRange(end).withLimit(1000);
            if (revision > 0) {
                page = page.withRevision(revision);
            }
            io.etcd.jetcd.kv.GetResponse got = within(kv.get(from, page.build()));
            if (revision == 0) {
                revision = got.getHeader().getRevision();
            }
            List<io.etcd.jetcd.KeyValue> kvs = got.getKvs();
            for (io.etcd.jetcd.KeyValue k : kvs) {
                local.put(k.getKey().toString(StandardCharsets.UTF_8), k.getValue().getBytes());
            }
            if (!got.isMore() || kvs.isEmpty()) {
                break;
            }
            from = bytes(kvs.get(kvs.size() - 1).getKey().toString(StandardCharsets.UTF_8) + "\0");
        }
        double firstCopy = (System.nanoTime() - started) / 1e9;
        int keys = local.size();
        int rssAfter = status("VmRSS");
        String stamped = prefix + "u/";
        String doneKey = prefix + "done";
        List<Long> latencies = java.util.Collections.synchronizedList(new ArrayList<>());
        CountDownLatch done = new CountDownLatch(1);
        WatchOption option = WatchOption.builder().isPrefix(true).withRevision(revision + 1).build();
        client.getWatchClient().watch(bytes(prefix), option, Watch.listener(response -> {
            for (WatchEvent event : response.getEvents()) {
                String key = event.getKeyValue().getKey().toString(StandardCharsets.UTF_8);
                if (event.getEventType() == WatchEvent.EventType.DELETE) {
                    local.remove(key);
                } else {
                    local.put(key, event.getKeyValue().getValue().getBytes());
                }
            }
            java.time.Instant now = java.time.Instant.now();
            long nowNanos = now.getEpochSecond() * 1_000_000_000L + now.getNano();
            for (WatchEvent event : response.getEvents()) {
                String key = event.getKeyValue().getKey().toString(StandardCharsets.UTF_8);
                if (key.equals(doneKey)) {
                    done.countDown();
                } else if (key.startsWith(stamped) && event.getEventType() == WatchEvent.EventType.PUT) {
                    try {
                        long sent = Long.parseLong(event.getKeyValue().getValue().toString(StandardCharsets.UTF_8));
                        latencies.add(nowNanos - sent);
                    } catch (NumberFormatException e) {
                        // Not a stamp.
                    }
                }
            }
        }));
        double cpuBefore = cpuSeconds();
        System.out.println("READY");
        System.out.flush();
        if (!done.await(300, TimeUnit.SECONDS)) {
            fail("mirror: the last update never came");
        }
        double cpu = cpuSeconds() - cpuBefore;
        long[] all;
        synchronized (latencies) {
            all = latencies.stream().mapToLong(Long::longValue).toArray();
        }
        Arrays.sort(all);
        System.out.println(String.format(java.util.Locale.ROOT,
                "{\"client\":\"jetcd\",\"workload\":\"mirror\",\"keys\":%d,\"first_copy_s\":%.6f,"
                        + "\"rss_delta_kib\":%d,\"updates\":%d,\"p50_us\":%.1f,\"p99_us\":%.1f,"
                        + "\"cpu_seconds\":%.6f,\"peak_rss_kib\":%d}",
                keys, firstCopy, rssAfter - rssBefore, all.length, pct(all, 0.50), pct(all, 0.99), cpu,
                status("VmHWM")));
        System.out.flush();
    }
}
