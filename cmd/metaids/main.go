// Command metaids is the metaids pipeline in one binary: each subcommand is a
// stage (ingest, scorer, adapter), a tool (train, eval, replay, label,
// generate) or a
// convenience (broker, up, demo). This package only parses flags and wires
// stages together; the work lives in the stage packages.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// Exit codes, as Prometheus and nats use them: tests check the 2.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// command is one subcommand. run receives the arguments after the
// subcommand's name and returns an exit code.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stderr io.Writer) int
}

func commands() map[string]command {
	return map[string]command{
		"broker":   {"run the embedded Kafka-protocol broker (kfake) standalone", runBroker},
		"ingest":   {"decode shipper flow records into Arrow feature batches", runIngest},
		"scorer":   {"score feature batches with the per-host LSTM and publish alerts", runScorer},
		"adapter":  {"fine-tune the classifier head from analyst labels", runAdapter},
		"up":       {"embedded broker plus every stage in one process", runUp},
		"demo":     {"embedded broker, all stages, synthetic attacks, alerts on screen", runDemo},
		"train":    {"pretrain and meta-train the model on labelled flow datasets", runTrain},
		"eval":     {"replay a labelled dataset through the pipeline and report detection quality", runEval},
		"replay":   {"produce flow-log files to an input topic, like a log shipper", runReplay},
		"label":    {"send analyst labels (by alert id, flow id, or a CSV/JSON file)", runLabel},
		"generate": {"write a synthetic scenario as labelled flow-log files (zeek, cic) or shipper JSON", runGenerate},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "metaids: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return exitUsage
	}
	return c.run(ctx, args[1:], stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: metaids <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'metaids <command> --help' for a command's flags.")
}
