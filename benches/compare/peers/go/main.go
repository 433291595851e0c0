// Command etcdbench is the Go clientv3 driver of etcd-blocking's side-by-side benchmark
// (benches/compare.rs). It runs one workload against the given endpoints and prints one
// JSON line of results; see benches/peers/README.md for the protocol.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"

	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/client/v3/mirror"
	"go.etcd.io/etcd/client/v3/snapshot"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

type result struct {
	Client     string  `json:"client"`
	Workload   string  `json:"workload"`
	Callers    int     `json:"callers"`
	ValueSize  int     `json:"value_size"`
	Ops        int     `json:"ops"`
	Errors     int     `json:"errors"`
	Seconds    float64 `json:"seconds"`
	P50Us      float64 `json:"p50_us"`
	P99Us      float64 `json:"p99_us"`
	P999Us     float64 `json:"p999_us"`
	CPUSeconds float64 `json:"cpu_seconds"`
	PeakRSSKiB int     `json:"peak_rss_kib"`
	Threads    int     `json:"threads"`
}

// cpuSeconds reads this process's CPU clock (user + system, every thread, nanoseconds).
func cpuSeconds() float64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

// deadline is every request's deadline, the same for every client of the comparison
// (etcdctl's default command timeout).
const deadline = 5 * time.Second

// traceOut writes trace lines as they happen, one at a time, so that a driver killed
// while hung has told everything up to then.
var traceOut sync.Mutex

func traceLine(line string) {
	traceOut.Lock()
	fmt.Println(line)
	traceOut.Unlock()
}

// status reads a kB or count field of /proc/self/status.
func status(name string) int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, name+":") {
			f := strings.Fields(line)
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

func main() {
	endpoints := flag.String("endpoints", "", "comma-separated host:port list")
	workload := flag.String("workload", "put", "put, get, get-serializable or txn")
	callers := flag.Int("callers", 1, "concurrent callers (goroutines)")
	valueSize := flag.Int("value-size", 64, "value size in bytes")
	ops := flag.Int("ops", 2000, "operations in all")
	durationMs := flag.Int("duration-ms", 0, "run for this long instead of --ops")
	trace := flag.Bool("trace", false, "print every request as it ends (R <start unix us> <took us> <ok>) and D as each caller ends")
	distinct := flag.Bool("distinct", false, "workload watch: every watch a range of its own")
	watchers := flag.Int("watchers", 1, "watches to create (workload watch)")
	puts := flag.Int("puts", 300, "sequential puts to time (workload watch)")
	leases := flag.Int("leases", 10000, "leases to keep alive (workload keepalive)")
	ttlS := flag.Int("ttl-s", 10, "their TTL in seconds (workload keepalive)")
	cacert := flag.String("cacert", "", "TLS: trust this CA (PEM file), with https:// endpoints")
	cert := flag.String("cert", "", "TLS: show this client certificate (PEM file)")
	key := flag.String("key", "", "TLS: its private key (PEM file)")
	user := flag.String("user", "", "auth: authenticate as this user")
	password := flag.String("password", "", "auth: with this password")
	idleMs := flag.Int("idle-ms", 0, "workload expiry: idle this long in every cycle")
	snapshotOut := flag.String("out", "", "workload snapshot: the file to save the snapshot to")
	prefix := flag.String("prefix", "mirror/", "workload mirror: the prefix to keep a copy of")
	flag.Parse()

	config := clientv3.Config{
		Endpoints:   strings.Split(*endpoints, ","),
		DialTimeout: 5 * time.Second,
		Username:    *user,
		Password:    *password,
	}
	if *cacert != "" {
		info := transport.TLSInfo{TrustedCAFile: *cacert, CertFile: *cert, KeyFile: *key}
		tlsConfig, err := info.ClientConfig()
		if err != nil {
			fmt.Fprintln(os.Stderr, "tls:", err)
			os.Exit(1)
		}
		config.TLS = tlsConfig
	}
	if *workload == "snapshot" {
		// etcdctl's snapshot save: the client's snapshot package, on one endpoint.
		config.Endpoints = config.Endpoints[:1]
		snapshotBench(config, *snapshotOut)
		return
	}
	cli, err := clientv3.New(config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
	defer cli.Close()
	switch *workload {
	case "mirror":
		mirrorBench(cli, *prefix)
		return
	case "watch":
		watchBench(cli, *watchers, *puts, *distinct)
		return
	case "watch-fault":
		watchFault(cli, time.Duration(*durationMs)*time.Millisecond)
		return
	case "keepalive":
		keepAliveBench(cli, *leases, *ttlS)
		return
	case "lock":
		lockBench(cli, *callers, *ops)
		return
	case "election":
		electionBench(cli, *ops)
		return
	case "stm":
		stmBench(cli, *callers, *ops)
		return
	case "expiry":
		expiryBench(cli, time.Duration(*durationMs)*time.Millisecond,
			time.Duration(*idleMs)*time.Millisecond, *ttlS)
		return
	}
	value := strings.Repeat("v", *valueSize)
	const keys = 1000
	ctx := context.Background()
	for i := 0; i < keys; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("bench/k/%d", i), value); err != nil {
			fmt.Fprintln(os.Stderr, "fill:", err)
			os.Exit(1)
		}
	}

	op := func(n int) error {
		key := fmt.Sprintf("bench/k/%d", n%keys)
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		var err error
		switch *workload {
		case "put":
			_, err = cli.Put(ctx, key, value)
		case "get":
			_, err = cli.Get(ctx, key)
		case "get-serializable":
			_, err = cli.Get(ctx, key, clientv3.WithSerializable())
		case "txn":
			_, err = cli.Txn(ctx).
				If(clientv3.Compare(clientv3.Version(key), ">", -1)).
				Then(clientv3.OpPut(key, value)).
				Commit()
		default:
			err = fmt.Errorf("unknown workload %q", *workload)
		}
		return err
	}

	threads := 0
	done := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			if t := status("Threads"); t > threads {
				threads = t
			}
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	latencies := make([][]time.Duration, *callers)
	errors := make([]int, *callers)
	var wg sync.WaitGroup
	cpuBefore := cpuSeconds()
	started := time.Now()
	if *trace {
		fmt.Printf("START %d\n", started.UnixNano()/1000)
	}
	for c := 0; c < *callers; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			if *trace {
				defer traceLine("D")
			}
			for n := c; ; n += *callers {
				if *durationMs > 0 {
					if time.Since(started) >= time.Duration(*durationMs)*time.Millisecond {
						return
					}
				} else if n >= *ops {
					return
				}
				t := time.Now()
				err := op(n)
				took := time.Since(t)
				if *trace {
					ok := 1
					if err != nil {
						ok = 0
					}
					traceLine(fmt.Sprintf("R %d %d %d", t.UnixNano()/1000, took.Microseconds(), ok))
				}
				if err != nil {
					errors[c]++
					continue
				}
				latencies[c] = append(latencies[c], took)
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(started)
	cpu := cpuSeconds() - cpuBefore
	close(done)
	sampler.Wait()

	var all []time.Duration
	errs := 0
	for c := range latencies {
		all = append(all, latencies[c]...)
		errs += errors[c]
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		i := int(float64(len(all)) * p)
		if i >= len(all) {
			i = len(all) - 1
		}
		return float64(all[i].Nanoseconds()) / 1000.0
	}
	out, _ := json.Marshal(result{
		Client:     "go-clientv3",
		Workload:   *workload,
		Callers:    *callers,
		ValueSize:  *valueSize,
		Ops:        len(all),
		Errors:     errs,
		Seconds:    elapsed.Seconds(),
		P50Us:      pct(0.50),
		P99Us:      pct(0.99),
		P999Us:     pct(0.999),
		CPUSeconds: cpu,
		PeakRSSKiB: status("VmHWM"),
		Threads:    threads,
	})
	fmt.Println(string(out))
}

type watchResult struct {
	Client       string  `json:"client"`
	Workload     string  `json:"workload"`
	Watchers     int     `json:"watchers"`
	Puts         int     `json:"puts"`
	CreateMs     float64 `json:"create_ms"`
	P50Us        float64 `json:"p50_us"`
	P99Us        float64 `json:"p99_us"`
	P999Us       float64 `json:"p999_us"`
	EventsPerSec float64 `json:"events_per_sec"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	RSSKiB       int     `json:"rss_kib"`
	Threads      int     `json:"threads"`
}

func percentile(all []time.Duration, p float64) float64 {
	if len(all) == 0 {
		return 0
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	i := int(float64(len(all)) * p)
	if i >= len(all) {
		i = len(all) - 1
	}
	return float64(all[i].Nanoseconds()) / 1000.0
}

// watchBench creates `watchers` watches on the prefix wbench/ (timed until every one has
// its created notification), then times `puts` sequential puts, each until every watcher
// has received its event. Watches share the client's stream, as clientv3 does by default;
// each is read by a goroutine of its own, as its users write it. With `distinct`, watch i
// covers [wbench/, wbench/~i): a range of its own that holds every key put.
func watchBench(cli *clientv3.Client, watchers, puts int, distinct bool) {
	ctx := context.Background()
	started := time.Now()
	chans := make([]clientv3.WatchChan, watchers)
	for i := range chans {
		if distinct {
			chans[i] = cli.Watch(ctx, "wbench/", clientv3.WithRange(fmt.Sprintf("wbench/~%d", i)), clientv3.WithCreatedNotify())
		} else {
			chans[i] = cli.Watch(ctx, "wbench/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
		}
	}
	for _, ch := range chans {
		resp, ok := <-ch
		if !ok || !resp.Created {
			fmt.Fprintln(os.Stderr, "watch not created:", resp.Err())
			os.Exit(1)
		}
	}
	createMs := float64(time.Since(started).Microseconds()) / 1000.0
	rss, threads := status("VmRSS"), status("Threads")
	var pending sync.WaitGroup
	for _, ch := range chans {
		go func(ch clientv3.WatchChan) {
			for resp := range ch {
				for range resp.Events {
					pending.Done()
				}
			}
		}(ch)
	}
	latencies := make([]time.Duration, 0, puts)
	cpuBefore := cpuSeconds()
	phase := time.Now()
	for i := 0; i < puts; i++ {
		pending.Add(watchers)
		t := time.Now()
		if _, err := cli.Put(ctx, fmt.Sprintf("wbench/%d", i), "v"); err != nil {
			fmt.Fprintln(os.Stderr, "put:", err)
			os.Exit(1)
		}
		pending.Wait()
		latencies = append(latencies, time.Since(t))
	}
	elapsed := time.Since(phase)
	cpu := cpuSeconds() - cpuBefore
	out, _ := json.Marshal(watchResult{
		Client:       "go-clientv3",
		Workload:     "watch",
		Watchers:     watchers,
		Puts:         puts,
		CreateMs:     createMs,
		P50Us:        percentile(latencies, 0.50),
		P99Us:        percentile(latencies, 0.99),
		P999Us:       percentile(latencies, 0.999),
		EventsPerSec: float64(watchers*puts) / elapsed.Seconds(),
		CPUSeconds:   cpu,
		RSSKiB:       rss,
		Threads:      threads,
	})
	fmt.Println(string(out))
}

// watchFault watches the prefix wfault/, prints READY once it is created, then a line
// "E <unix us> <revision of the response's last event>" per response with events, for
// `duration`. clientv3 resumes the watch on another endpoint by itself.
func watchFault(cli *clientv3.Client, duration time.Duration) {
	ch := cli.Watch(context.Background(), "wfault/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if resp, ok := <-ch; !ok || !resp.Created {
		fmt.Fprintln(os.Stderr, "watch not created:", resp.Err())
		os.Exit(1)
	}
	fmt.Println("READY")
	end := time.After(duration)
	for {
		select {
		case resp, ok := <-ch:
			if !ok {
				return
			}
			if n := len(resp.Events); n > 0 {
				fmt.Printf("E %d %d\n", time.Now().UnixMicro(), resp.Events[n-1].Kv.ModRevision)
			}
		case <-end:
			return
		}
	}
}

type keepAliveResult struct {
	Client     string  `json:"client"`
	Workload   string  `json:"workload"`
	Leases     int     `json:"leases"`
	SetupMs    float64 `json:"setup_ms"`
	CPUSeconds float64 `json:"cpu_seconds"`
	Seconds    float64 `json:"seconds"`
	RSSKiB     int     `json:"rss_kib"`
	Threads    int     `json:"threads"`
}

// keepAliveBench grants `leases` leases of `ttlS` seconds from 8 goroutines and keeps
// each alive with cli.KeepAlive (one keepalive stream for all, clientv3's own renewal
// loop), then measures the process's CPU over three TTLs. Each KeepAlive channel is
// drained, as clientv3 asks of its users.
func keepAliveBench(cli *clientv3.Client, leases, ttlS int) {
	ctx := context.Background()
	started := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < leases; i += 8 {
				grant, err := cli.Grant(ctx, int64(ttlS))
				if err != nil {
					fmt.Fprintln(os.Stderr, "grant:", err)
					os.Exit(1)
				}
				ch, err := cli.KeepAlive(ctx, grant.ID)
				if err != nil {
					fmt.Fprintln(os.Stderr, "keepalive:", err)
					os.Exit(1)
				}
				go func() {
					for range ch {
					}
				}()
			}
		}(w)
	}
	wg.Wait()
	setupMs := float64(time.Since(started).Microseconds()) / 1000.0
	cpuBefore := cpuSeconds()
	window := time.Now()
	time.Sleep(3 * time.Duration(ttlS) * time.Second)
	out, _ := json.Marshal(keepAliveResult{
		Client:     "go-clientv3",
		Workload:   "keepalive",
		Leases:     leases,
		SetupMs:    setupMs,
		CPUSeconds: cpuSeconds() - cpuBefore,
		Seconds:    time.Since(window).Seconds(),
		RSSKiB:     status("VmRSS"),
		Threads:    status("Threads"),
	})
	fmt.Println(string(out))
}

// lockBench: `callers` goroutines, each with a session of its own (TTL 10 s) and the
// mutex /bench-lock, share `ops` lock + unlock pairs; the latency is of the pair.
func lockBench(cli *clientv3.Client, callers, ops int) {
	cpuBefore := cpuSeconds()
	started := time.Now()
	all := timedCallers(callers, ops, func() (func() error, func()) {
		session, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
		if err != nil {
			fmt.Fprintln(os.Stderr, "session:", err)
			os.Exit(1)
		}
		mutex := concurrency.NewMutex(session, "/bench-lock")
		pair := func() error {
			if err := mutex.Lock(context.Background()); err != nil {
				return err
			}
			return mutex.Unlock(context.Background())
		}
		return pair, func() { session.Close() }
	})
	printRun("lock", callers, all, time.Since(started), cpuSeconds()-cpuBefore)
}

// timedCallers shares `ops` operations among `callers` goroutines, each with the
// operation (and what ends its use) that newOp makes for it, and returns every
// operation's latency. A failed operation ends the process.
func timedCallers(callers, ops int, newOp func() (func() error, func())) []time.Duration {
	latencies := make([][]time.Duration, callers)
	var wg sync.WaitGroup
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			op, done := newOp()
			defer done()
			for n := c; n < ops; n += callers {
				t := time.Now()
				if err := op(); err != nil {
					fmt.Fprintln(os.Stderr, "operation:", err)
					os.Exit(1)
				}
				latencies[c] = append(latencies[c], time.Since(t))
			}
		}(c)
	}
	wg.Wait()
	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	return all
}

// printRun prints a recipe workload's line in the KV protocol.
func printRun(workload string, callers int, all []time.Duration, elapsed time.Duration, cpu float64) {
	out, _ := json.Marshal(result{
		Client:     "go-clientv3",
		Workload:   workload,
		Callers:    callers,
		Ops:        len(all),
		Seconds:    elapsed.Seconds(),
		P50Us:      percentile(all, 0.50),
		P99Us:      percentile(all, 0.99),
		P999Us:     percentile(all, 0.999),
		CPUSeconds: cpu,
		PeakRSSKiB: status("VmHWM"),
		Threads:    status("Threads"),
	})
	fmt.Println(string(out))
}

// electionBench: `ops` rounds of a handover. Candidate a leads /bench-election, candidate
// b campaigns behind it, a's session lease is revoked (the session is lost); the latency
// runs from the revoke sent to b's Campaign returning. Each candidate has a session of
// its own (TTL 10 s), new every round.
func electionBench(cli *clientv3.Client, ops int) {
	ctx := context.Background()
	must := func(what string, err error) {
		if err != nil {
			fmt.Fprintln(os.Stderr, what+":", err)
			os.Exit(1)
		}
	}
	var all []time.Duration
	cpuBefore := cpuSeconds()
	started := time.Now()
	for n := 0; n < ops; n++ {
		a, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
		must("session", err)
		b, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
		must("session", err)
		must("campaign a", concurrency.NewElection(a, "/bench-election").Campaign(ctx, "a"))
		eb := concurrency.NewElection(b, "/bench-election")
		won := make(chan time.Time, 1)
		go func() {
			must("campaign b", eb.Campaign(ctx, "b"))
			won <- time.Now()
		}()
		for {
			resp, err := cli.Get(ctx, "/bench-election/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			must("count", err)
			if resp.Count >= 2 {
				break
			}
		}
		t := time.Now()
		_, err = cli.Revoke(ctx, a.Lease())
		must("revoke", err)
		all = append(all, (<-won).Sub(t))
		must("resign", eb.Resign(ctx))
		a.Orphan()
		must("close", b.Close())
	}
	printRun("election", 1, all, time.Since(started), cpuSeconds()-cpuBefore)
}

// stmBench: `callers` goroutines share `ops` increments of bench-stm, each a run of
// concurrency.NewSTM at its default isolation (serializable snapshot); the latency is of
// a run, conflicts and reruns included.
func stmBench(cli *clientv3.Client, callers, ops int) {
	cpuBefore := cpuSeconds()
	started := time.Now()
	all := timedCallers(callers, ops, func() (func() error, func()) {
		run := func() error {
			_, err := concurrency.NewSTM(cli, func(s concurrency.STM) error {
				v, _ := strconv.Atoi(s.Get("bench-stm"))
				s.Put("bench-stm", strconv.Itoa(v+1))
				return nil
			})
			return err
		}
		return run, func() {}
	})
	printRun("stm", callers, all, time.Since(started), cpuSeconds()-cpuBefore)
}

// expiryBench runs the token expiry load (see peer_expiry/mod.rs): a watch of exp/ and a
// lease of ttlS seconds kept alive with cli.KeepAlive; then cycles of 300 ms of puts of new
// keys each read back, a new watch of late/<cycle>/ awaited created with a put under it and
// its event awaited, and an idle time; then counts what the first watch lost or repeated
// and whether the lease is still there.
func expiryBench(cli *clientv3.Client, duration, idle time.Duration, ttlS int) {
	cpuBefore := cpuSeconds()
	started := time.Now()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	ch := cli.Watch(watchCtx, "exp/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if resp, ok := <-ch; !ok || !resp.Created {
		fmt.Fprintln(os.Stderr, "watch not created:", resp.Err())
		os.Exit(1)
	}
	call := func(f func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		return f(ctx)
	}
	var grant *clientv3.LeaseGrantResponse
	if err := call(func(ctx context.Context) (err error) {
		grant, err = cli.Grant(ctx, int64(ttlS))
		return
	}); err != nil {
		fmt.Fprintln(os.Stderr, "grant:", err)
		os.Exit(1)
	}
	keepCtx, stopKeep := context.WithCancel(context.Background())
	defer stopKeep()
	kept, err := cli.KeepAlive(keepCtx, grant.ID)
	if err != nil {
		fmt.Fprintln(os.Stderr, "keep alive:", err)
		os.Exit(1)
	}
	go func() {
		for range kept {
		}
	}()
	ops, errs, watches, watchErrors := 0, 0, 0, 0
	count := func(err error) bool {
		if err != nil {
			errs++
			fmt.Fprintln(os.Stderr, "expiry: a call failed:", err)
			return false
		}
		ops++
		return true
	}
	var acknowledged []string
	n := 0
	for cycle := 0; time.Since(started) < duration; cycle++ {
		burst := time.Now().Add(300 * time.Millisecond)
		for time.Now().Before(burst) {
			key := fmt.Sprintf("exp/%08d", n)
			n++
			if count(call(func(ctx context.Context) error { _, err := cli.Put(ctx, key, "v"); return err })) {
				acknowledged = append(acknowledged, key)
			}
			count(call(func(ctx context.Context) error { _, err := cli.Get(ctx, key); return err }))
		}
		watches++
		if !lateWatch(cli, fmt.Sprintf("late/%d/", cycle), count) {
			watchErrors++
		}
		time.Sleep(idle)
	}
	var seen []string
	wait := time.NewTimer(deadline)
collect:
	for len(seen) < len(acknowledged) {
		select {
		case resp, ok := <-ch:
			if !ok {
				fmt.Fprintln(os.Stderr, "expiry: the watch of exp/ ended")
				break collect
			}
			if err := resp.Err(); err != nil {
				fmt.Fprintln(os.Stderr, "expiry: the watch of exp/:", err)
			}
			for _, ev := range resp.Events {
				seen = append(seen, string(ev.Kv.Key))
			}
			wait.Reset(deadline)
		case <-wait.C:
			break collect
		}
	}
	times := map[string]int{}
	repeated, lost := 0, 0
	last := ""
	for _, k := range seen {
		times[k]++
		if times[k] > 1 || (last != "" && last >= k) {
			repeated++
		}
		last = k
	}
	for _, k := range acknowledged {
		if times[k] == 0 {
			lost++
		}
	}
	lapsed := 1
	if err := call(func(ctx context.Context) error {
		resp, err := cli.TimeToLive(ctx, grant.ID)
		if err == nil && resp.TTL > 0 {
			lapsed = 0
		}
		return err
	}); err != nil {
		fmt.Fprintln(os.Stderr, "expiry: the lease's time to live:", err)
	}
	fmt.Printf("{\"client\":\"go-clientv3\",\"workload\":\"expiry\",\"ops\":%d,\"errors\":%d,"+
		"\"watches\":%d,\"watch_errors\":%d,\"lost\":%d,\"repeated\":%d,\"lapsed\":%d,"+
		"\"seconds\":%f,\"cpu_seconds\":%f}\n",
		ops, errs, watches, watchErrors, lost, repeated, lapsed,
		time.Since(started).Seconds(), cpuSeconds()-cpuBefore)
}

// lateWatch creates a watch of prefix, awaits it created, puts a key under it and awaits
// its event, each within the deadline; whether all of it worked.
func lateWatch(cli *clientv3.Client, prefix string, count func(error) bool) bool {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	select {
	case resp, ok := <-ch:
		if !ok || !resp.Created || resp.Canceled {
			fmt.Fprintln(os.Stderr, "expiry: watch", prefix, "not created:", resp.Err())
			return false
		}
	case <-timer.C:
		fmt.Fprintln(os.Stderr, "expiry: watch", prefix, "not created in time")
		return false
	}
	putCtx, putCancel := context.WithTimeout(context.Background(), deadline)
	_, err := cli.Put(putCtx, prefix+"k", "x")
	putCancel()
	if !count(err) {
		return false
	}
	timer.Reset(deadline)
	for {
		select {
		case resp, ok := <-ch:
			if !ok || resp.Canceled {
				fmt.Fprintln(os.Stderr, "expiry: watch", prefix, "ended:", resp.Err())
				return false
			}
			if len(resp.Events) > 0 {
				return true
			}
		case <-timer.C:
			fmt.Fprintln(os.Stderr, "expiry: no event on watch", prefix, "in time")
			return false
		}
	}
}

// snapshotBench saves a snapshot of the endpoint's member to out the way etcdctl's
// "snapshot save" does (snapshot.SaveWithVersion: a .part file, size checked, synced,
// renamed), and reports the time, the bytes and the process's CPU and peak RSS.
func snapshotBench(config clientv3.Config, out string) {
	cpuBefore := cpuSeconds()
	started := time.Now()
	if _, err := snapshot.SaveWithVersion(context.Background(), zap.NewNop(), config, out); err != nil {
		fmt.Fprintln(os.Stderr, "snapshot:", err)
		os.Exit(1)
	}
	elapsed := time.Since(started)
	info, err := os.Stat(out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "snapshot:", err)
		os.Exit(1)
	}
	fmt.Printf("{\"client\":\"go-clientv3\",\"workload\":\"snapshot\",\"bytes\":%d,\"seconds\":%f,"+
		"\"cpu_seconds\":%f,\"peak_rss_kib\":%d}\n",
		info.Size(), elapsed.Seconds(), cpuSeconds()-cpuBefore, status("VmHWM"))
}

// mirrorBench keeps a local copy of a prefix the way clientv3's users do: mirror.Syncer's
// SyncBase (the prefix at one revision, a page of 1,000 keys at a time) into a map, then
// its SyncUpdates watch from the revision after, each event applied to the map under a
// lock. It prints READY once the copy is in; the orchestrator then writes updates under
// prefix+"u/" whose values are the wall-clock time of their sending (Unix nanoseconds),
// and prefix+"done" last. Put to visible is the time from that stamp to the event's
// application; CPU is counted from ready to done.
func mirrorBench(cli *clientv3.Client, prefix string) {
	ctx := context.Background()
	rssBefore := status("VmRSS")
	started := time.Now()
	syncer := mirror.NewSyncer(cli, prefix, 0)
	var lock sync.RWMutex
	local := map[string][]byte{}
	respc, errc := syncer.SyncBase(ctx)
	for resp := range respc {
		lock.Lock()
		for _, kv := range resp.Kvs {
			local[string(kv.Key)] = kv.Value
		}
		lock.Unlock()
	}
	if err := <-errc; err != nil {
		fmt.Fprintln(os.Stderr, "mirror: sync base:", err)
		os.Exit(1)
	}
	firstCopy := time.Since(started)
	keys := len(local)
	rssAfter := status("VmRSS")
	updates := syncer.SyncUpdates(ctx)
	cpuBefore := cpuSeconds()
	fmt.Println("READY")
	stamped := prefix + "u/"
	var latencies []time.Duration
	done := false
	for !done {
		wresp, ok := <-updates
		if !ok {
			fmt.Fprintln(os.Stderr, "mirror: the watch ended")
			os.Exit(1)
		}
		if err := wresp.Err(); err != nil {
			fmt.Fprintln(os.Stderr, "mirror: watch:", err)
			os.Exit(1)
		}
		lock.Lock()
		for _, ev := range wresp.Events {
			key := string(ev.Kv.Key)
			if ev.Type == clientv3.EventTypeDelete {
				delete(local, key)
			} else {
				local[key] = ev.Kv.Value
			}
		}
		lock.Unlock()
		now := time.Now().UnixNano()
		for _, ev := range wresp.Events {
			key := string(ev.Kv.Key)
			if key == prefix+"done" {
				done = true
			} else if strings.HasPrefix(key, stamped) && ev.Type == clientv3.EventTypePut {
				if sent, err := strconv.ParseInt(string(ev.Kv.Value), 10, 64); err == nil {
					latencies = append(latencies, time.Duration(now-sent))
				}
			}
		}
	}
	cpu := cpuSeconds() - cpuBefore
	fmt.Printf("{\"client\":\"go-clientv3\",\"workload\":\"mirror\",\"keys\":%d,\"first_copy_s\":%f,"+
		"\"rss_delta_kib\":%d,\"updates\":%d,\"p50_us\":%f,\"p99_us\":%f,\"cpu_seconds\":%f,"+
		"\"peak_rss_kib\":%d}\n",
		keys, firstCopy.Seconds(), rssAfter-rssBefore, len(latencies), percentile(latencies, 0.50),
		percentile(latencies, 0.99), cpu, status("VmHWM"))
}
