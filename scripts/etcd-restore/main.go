// The snapshot restore of etcdutl (go.etcd.io/etcd/etcdutl/v3/snapshot) of whichever
// version go.mod names, as one command the launcher runs for each member of a cluster
// started from a snapshot (ClusterBuilder::restore_from). scripts/deps.sh builds it beside
// the etcd binary of the same version. etcdutl's restore checks the snapshot's trailing
// SHA-256 before it writes anything.
package main

import (
	"fmt"
	"os"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

func main() {
	if len(os.Args) != 6 {
		fmt.Fprintln(os.Stderr, "usage: etcd-restore SNAPSHOT DATA_DIR NAME PEER_URL INITIAL_CLUSTER")
		os.Exit(2)
	}
	err := snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath:        os.Args[1],
		OutputDataDir:       os.Args[2],
		Name:                os.Args[3],
		PeerURLs:            []string{os.Args[4]},
		InitialCluster:      os.Args[5],
		InitialClusterToken: "etcd-restore",
		SkipHashCheck:       false,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "restore:", err)
		os.Exit(1)
	}
}
