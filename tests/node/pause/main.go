// The pod sandbox ("pause") process for the test node: it only holds the pod's namespaces open and
// waits for SIGTERM or SIGINT. Built static by scripts/build-node.sh (NODE=1) because the upstream
// pause image cannot be pulled on the project's machines.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
