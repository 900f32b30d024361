package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"go.etcd.io/etcd/server/v3/embed"
)

// runEtcd starts an embedded single-member etcd that listens for clients on
// one loopback URL and serves until it receives SIGTERM or SIGINT.
func runEtcd(args []string) int {
	flags := flag.NewFlagSet("etcd", flag.ContinueOnError)
	dataDir := flags.String("data-dir", "", "directory for etcd's data (required)")
	clientURL := flags.String("listen-client-url", "", "client URL, such as http://127.0.0.1:2379 (required)")
	peerURL := flags.String("listen-peer-url", "", "peer URL, such as http://127.0.0.1:2380 (required)")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *dataDir == "" || *clientURL == "" || *peerURL == "" {
		fmt.Fprintln(os.Stderr, "etcd: --data-dir, --listen-client-url and --listen-peer-url are required")
		return 2
	}

	config := embed.NewConfig()
	config.Dir = *dataDir
	config.LogLevel = "warn"
	client, err := url.Parse(*clientURL)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: invalid --listen-client-url %q: %v\n", *clientURL, err)
		return 2
	}
	peer, err := url.Parse(*peerURL)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: invalid --listen-peer-url %q: %v\n", *peerURL, err)
		return 2
	}
	config.ListenClientUrls = []url.URL{*client}
	config.AdvertiseClientUrls = []url.URL{*client}
	config.ListenPeerUrls = []url.URL{*peer}
	config.AdvertisePeerUrls = []url.URL{*peer}
	config.InitialCluster = config.Name + "=" + peer.String()

	server, err := embed.StartEtcd(config)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: failed to start: %v\n", err)
		return 1
	}
	defer server.Close()

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-server.Server.ReadyNotify():
		fmt.Fprintln(os.Stderr, "etcd: ready to serve clients on", client.String())
	case err := <-server.Err():
		fmt.Fprintf(os.Stderr, "etcd: failed: %v\n", err)
		return 1
	case <-signals:
		return 0
	}

	select {
	case err := <-server.Err():
		fmt.Fprintf(os.Stderr, "etcd: failed: %v\n", err)
		return 1
	case <-signals:
		fmt.Fprintln(os.Stderr, "etcd: stopping")
		return 0
	}
}
