// Package cli builds podgrace's commands: `webhook`, `inject`, `audit`, `generate`,
// `calibrate` (with its `probe` and `probe-client`) and `version`.
// Each command is a constructor over explicit streams, so tests run it in
// process exactly as a user would.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/podgrace/podgrace/pkg/version"
)

// ExitInterrupted is the exit code after SIGINT or SIGTERM (128 + SIGINT, as shells report it).
const ExitInterrupted = 130

// interruptGrace is how long Main waits, after a signal, for the command to
// notice its canceled context before returning anyway.
const interruptGrace = 500 * time.Millisecond

// Main runs the command line and returns the process exit code. On SIGINT
// or SIGTERM it returns ExitInterrupted within a second, and nothing more is
// written to stdout from then on: commands write their output once, at the
// end, so it is all there or none of it (issue 23).
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	out := &gatedWriter{w: stdout}
	cmd := NewRootCommand(stdin, out, stderr)
	if strings.HasPrefix(filepath.Base(args[0]), "kubectl-") {
		cmd.Use = "kubectl podgrace"
	}
	cmd.SetArgs(args[1:])
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	// A command that drains on SIGTERM (webhook) handles the signal itself.
	interruptible := ctx.Done()
	if c, _, ferr := cmd.Find(args[1:]); ferr == nil && c.Annotations[annotationDrains] == "true" {
		interruptible = nil
	}
	var err error
	select {
	case err = <-done:
	case <-interruptible:
		stop() // a second Ctrl-C kills at once
		out.close()
		select {
		case e := <-done:
			_ = e // stopped by the signal: its error is not reported
		case <-time.After(interruptGrace):
		}
		_, _ = fmt.Fprintln(stderr, "Interrupted; no output written.")
		return ExitInterrupted
	}
	if err != nil {
		if e, ok := errors.AsType[*exitError](err); ok {
			_, _ = fmt.Fprintln(stderr, e.msg)
			return e.code
		}
		_, _ = fmt.Fprintln(stderr, "Error:", err)
		return 1
	}
	return 0
}

// annotationDrains marks a command that handles SIGTERM itself (the
// webhook drains for --drain-delay): Main waits for it to return.
const annotationDrains = "podgrace.dev/drains-on-signal"

// gatedWriter stops passing writes once closed; a write in progress
// completes first.
type gatedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, errors.New("interrupted")
	}
	return g.w.Write(p)
}

func (g *gatedWriter) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// NewRootCommand returns the podgrace command tree.
func NewRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "podgrace",
		Short:         "Graceful pod shutdown for Kubernetes: preStop sleeps and exec-form commands",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newAuditCommand(), newCalibrateCommand(), newExplainCommand(), newInjectCommand(), newSelftestCommand(),
		newWebhookCommand(), newGenerateCommand(), newVersionCommand(), newProbeCommand(), newProbeClientCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print podgrace's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version.Version)
			return err
		},
	}
}
