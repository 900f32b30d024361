// Command controlplane runs one Kubernetes control-plane component, chosen by
// its first argument, so that a single cached binary serves the whole local
// cluster: etcd, kube-apiserver, kube-controller-manager or kubectl.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: controlplane etcd|kube-apiserver|kube-controller-manager|kubectl [flags]")
		os.Exit(2)
	}
	component, args := os.Args[1], os.Args[2:]

	var command *cobra.Command
	switch component {
	case "etcd":
		os.Exit(runEtcd(args))
	case "kube-apiserver":
		command = apiserver.NewAPIServerCommand()
	case "kube-controller-manager":
		command = controllermanager.NewControllerManagerCommand()
	case "kubectl":
		command = kubectlcmd.NewDefaultKubectlCommand()
	default:
		fmt.Fprintf(os.Stderr, "unknown component %q: expected etcd, kube-apiserver, kube-controller-manager or kubectl\n", component)
		os.Exit(2)
	}

	command.SetArgs(args)
	os.Exit(cli.Run(command))
}
