package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/pmezard/go-difflib/difflib"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/podgrace/podgrace/pkg/imageconfig"
	"github.com/podgrace/podgrace/pkg/manifest"
	"github.com/podgrace/podgrace/pkg/policy"
)

type injectOptions struct {
	file          string
	configPath    string
	nsAnnotations map[string]string
	hookAction    string
	diff          bool
	inspect       bool
	maxInputMiB   int64
}

func newInjectCommand() *cobra.Command {
	o := &injectOptions{}
	cmd := &cobra.Command{
		Use:   "inject -f FILE|-",
		Short: "Apply podgrace's mutation to manifests offline (GitOps)",
		Long: `inject applies exactly the mutation the webhook applies to Pods and to the pod
templates of Deployments, StatefulSets, DaemonSets, ReplicaSets,
ReplicationControllers, Jobs and CronJobs in a multi-document YAML stream, and
prints the stream. Other documents pass through unchanged; changed documents
keep their key order and comments. Warnings go to stderr. On any error nothing
is printed to stdout and the exit code is 1.`,
		Example: `  podgrace inject -f deploy.yaml | kubectl apply -f -
  kustomize build overlays/prod | podgrace inject -f - --diff
  podgrace inject -f deploy.yaml --namespace-annotations podgrace.dev/prestop-sleep=20s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "filename", "f", "", "manifest file to read, or - for stdin (required)")
	f.StringVar(&o.configPath, "config", "", "cluster config file (the chart's config.yaml); defaults when unset")
	f.StringToStringVar(&o.nsAnnotations, "namespace-annotations", nil, "annotations of the target namespace, as k=v,k=v")
	f.StringVar(&o.hookAction, "hook-action", "", "preStop action: sleep or exec (default: the config's hookAction; auto means sleep)")
	f.BoolVar(&o.diff, "diff", false, "print a unified diff instead of the mutated manifests")
	f.BoolVar(&o.inspect, "inspect-images", false, "read image configs from their registries (with your docker credentials) to rewrite a shell-form ENTRYPOINT/CMD")
	f.Int64Var(&o.maxInputMiB, "max-input-mib", DefaultMaxInputMiB, "the most MiB of manifests read; more is an error (peak memory is a small multiple of the input)")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

func (o *injectOptions) run(cmd *cobra.Command) error {
	cfg, err := policy.LoadConfig(o.configPath)
	if err != nil {
		return err
	}
	hook := cfg.HookAction
	if o.hookAction != "" {
		hook = policy.HookAction(o.hookAction)
		if hook != policy.HookSleep && hook != policy.HookExec {
			return fmt.Errorf("--hook-action: %q is not sleep or exec", o.hookAction)
		}
	}
	limit := newInputLimit(o.maxInputMiB)
	name := "stdin"
	var src []byte
	if o.file == "-" {
		src, err = limit.read(name, cmd.InOrStdin())
	} else {
		name = o.file
		src, err = limit.readFile(o.file)
	}
	if err != nil {
		return err
	}
	opts := manifest.Options{Config: &cfg, NamespaceAnnotations: o.nsAnnotations, HookAction: hook}
	if o.inspect {
		// The same inspector the webhook uses; credentials are the user's
		// own (docker/podman config, credential helpers) instead of pull secrets.
		opts.Images = newInspector(cfg.ImageInspection).Lookup(
			func(context.Context, *corev1.Pod) (authn.Keychain, error) { return authn.DefaultKeychain, nil })
	}
	// Documents are mutated one at a time and only the lines stderr will
	// show are kept of their results. An error at any document must leave
	// stdout empty, so the output is spooled (to a temporary file, or to
	// memory for --diff, which needs it whole) and printed once the whole
	// stream has passed: peak memory stays under 10x the input
	// (docs/reference/cli.md).
	var notes bytes.Buffer
	report := func(d *manifest.DocResult) {
		for _, w := range d.Warnings {
			_, _ = fmt.Fprintf(&notes, "%s: %s: %s\n", name, d.Where(), w)
		}
		if o.diff && d.NotHandled != "" {
			_, _ = fmt.Fprintf(&notes, "%s: %s: %s\n", name, d.Where(), d.NotHandled)
		}
	}
	if o.diff {
		var out bytes.Buffer
		if err := manifest.InjectTo(cmd.Context(), &out, src, opts, report); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		_, _ = notes.WriteTo(cmd.ErrOrStderr())
		text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A: difflib.SplitLines(string(src)), B: difflib.SplitLines(out.String()),
			FromFile: name, ToFile: name + " (podgrace)", Context: 3,
		})
		if err != nil {
			return err
		}
		_, err = io.WriteString(cmd.OutOrStdout(), text)
		return err
	}
	spool, err := os.CreateTemp("", "podgrace-inject-*")
	if err != nil {
		return fmt.Errorf("a temporary file for the output: %w", err)
	}
	defer func() {
		_ = spool.Close()
		_ = os.Remove(spool.Name())
	}()
	w := bufio.NewWriterSize(spool, 64<<10)
	if err := manifest.InjectTo(cmd.Context(), w, src, opts, report); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing the temporary file %s: %w", spool.Name(), err)
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, _ = notes.WriteTo(cmd.ErrOrStderr())
	_, err = io.Copy(cmd.OutOrStdout(), spool)
	return err
}

// testLoopbackRegistries are the tests' in-process registries on loopback,
// which image inspection refuses otherwise (imageconfig.Options.
// LoopbackRegistries). Only tests set it, before they run in parallel.
var testLoopbackRegistries []string

// newInspector is the inspector of --inspect-images: the cluster config's
// rules, as in the webhook.
func newInspector(c policy.ImageInspection) *imageconfig.Inspector {
	o := imageconfig.OptionsFrom(c)
	o.LoopbackRegistries = testLoopbackRegistries
	return imageconfig.New(o)
}
