// etcdctl of whichever version go.mod names: its own command tree (ctlv3), as the etcdctl
// binary has it. scripts/deps.sh builds it beside the etcd binary of the same version, for
// tests that check what this client says against what etcdctl says.
package main

import "go.etcd.io/etcd/etcdctl/v3/ctlv3"

func main() {
	ctlv3.MustStart()
}
