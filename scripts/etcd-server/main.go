// A real etcd server of whichever version go.mod names: the server module's own entry
// point, as the etcd binary has it. scripts/deps.sh builds it once per version, outside
// the clone, for the tests, the demo and the benches.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
