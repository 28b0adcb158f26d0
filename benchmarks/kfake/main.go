// Command kfake runs an in-process Kafka cluster (github.com/twmb/franz-go/pkg/kfake:
// the Kafka wire protocol, messages kept in memory) until it is interrupted, so that
// `herald loadgen --kafka-brokers` can measure Herald's Kafka mode where no broker runs:
//
//	go run ./benchmarks/kfake -addr 127.0.0.1:9092 &
//	herald loadgen --db ... --kafka-brokers 127.0.0.1:9092 --rate max --events 20000 --json
//
// It prints the brokers' addresses, one per line, once they listen. A test fixture,
// not a broker: nothing reaches a disk, every message stays in this process's memory,
// and it shares the machine's CPU with Herald.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9092", "host:port of the first broker (port 0: any free port)")
	brokers := flag.Int("brokers", 1, "brokers in the cluster (the next ones listen on the following ports, or on free ports with port 0)")
	flag.Parse()
	if err := run(*addr, *brokers); err != nil {
		fmt.Fprintln(os.Stderr, "kfake:", err)
		os.Exit(1)
	}
}

func run(addr string, brokers int) error {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return fmt.Errorf("-addr %q: the port must be a number from 0 to 65535", addr)
	}
	if brokers < 1 {
		return fmt.Errorf("-brokers %d: at least 1", brokers)
	}
	ports := make([]int, brokers)
	for i := range ports {
		if port != 0 {
			ports[i] = port + i
		}
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(brokers), kfake.Ports(ports...),
		kfake.ListenFn(func(network, a string) (net.Listener, error) {
			_, pa, _ := net.SplitHostPort(a)
			var lc net.ListenConfig
			return lc.Listen(context.Background(), network, net.JoinHostPort(host, pa))
		}))
	if err != nil {
		return err
	}
	defer c.Close()
	for _, a := range c.ListenAddrs() {
		fmt.Println(a)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	return nil
}
