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
	"syscall"

	"github.com/spf13/cobra"

	"github.com/podgrace/podgrace/pkg/version"
)

// Main runs the command line and returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cmd := NewRootCommand(stdin, stdout, stderr)
	if strings.HasPrefix(filepath.Base(args[0]), "kubectl-") {
		cmd.Use = "kubectl podgrace"
	}
	cmd.SetArgs(args[1:])
	if err := cmd.ExecuteContext(ctx); err != nil {
		if e, ok := errors.AsType[*exitError](err); ok {
			_, _ = fmt.Fprintln(stderr, e.msg)
			return e.code
		}
		_, _ = fmt.Fprintln(stderr, "Error:", err)
		return 1
	}
	return 0
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
