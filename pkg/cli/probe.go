package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/podgrace/podgrace/pkg/calibrate"
)

// newProbeCommand is the server `podgrace calibrate` deploys
// (docs/operate/sizing.md): it is not meant to be run by hand.
func newProbeCommand() *cobra.Command {
	var window, hold time.Duration
	var listen, admin, pod string
	cmd := &cobra.Command{
		Use:    "probe",
		Short:  "The probe server podgrace calibrate deploys (serves after SIGTERM for --window, recording each request)",
		Hidden: true,
		// SIGTERM starts the measurement, it does not end the process.
		Annotations: map[string]string{annotationDrains: "true"},
		Args:        cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pod == "" {
				pod, _ = os.Hostname()
			}
			tl, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			al, err := net.Listen("tcp", admin)
			if err != nil {
				_ = tl.Close()
				return err
			}
			out := cmd.OutOrStdout()
			p := calibrate.NewProbe(pod, window)
			_, _ = fmt.Fprintf(out, "%s probe %s serving traffic on %s, records on %s; after SIGTERM it serves for %s\n",
				time.Now().Format(time.RFC3339Nano), pod, listen, admin, window)
			// Main's context ends on SIGTERM: that is the start of
			// termination. The servers themselves run on until the window
			// and the collection are over.
			term := make(chan struct{})
			go func() {
				<-cmd.Context().Done()
				_, _ = fmt.Fprintf(out, "%s got SIGTERM: Connection: close from now on, serving for %s\n", time.Now().Format(time.RFC3339Nano), window)
				close(term)
			}()
			err = p.Serve(context.Background(), tl, al, term, hold)
			_, _ = fmt.Fprintf(out, "%s window over, exiting (%d requests served)\n", time.Now().Format(time.RFC3339Nano), p.Snapshot().Requests)
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	f.DurationVar(&window, "window", 90*time.Second, "how long to keep serving after SIGTERM")
	f.DurationVar(&hold, "hold", 15*time.Second, "after the window, how long to wait for calibrate to read the final records")
	f.StringVar(&listen, "listen", fmt.Sprintf(":%d", calibrate.ProbePort), "traffic address")
	f.StringVar(&admin, "admin", fmt.Sprintf(":%d", calibrate.AdminPort), "address of /readyz and /records (read through pods/proxy)")
	f.StringVar(&pod, "pod", os.Getenv("POD_NAME"), "the pod's name, echoed in answers (default $POD_NAME, else the hostname)")
	return cmd
}

// newProbeClientCommand is the traffic `podgrace calibrate` sends.
func newProbeClientCommand() *cobra.Command {
	c := &calibrate.Client{}
	var admin string
	cmd := &cobra.Command{
		Use:    "probe-client",
		Short:  "The traffic podgrace calibrate sends (GETs on new connections, counters on /stats)",
		Hidden: true,
		// Stopped when calibrate deletes it: it returns on SIGTERM by itself.
		Annotations: map[string]string{annotationDrains: "true"},
		Args:        cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c.URL == "" {
				return errors.New("--url is required")
			}
			al, err := net.Listen("tcp", admin)
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: c.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
			go func() { _ = srv.Serve(al) }()
			defer func() { _ = srv.Close() }()
			_, _ = fmt.Fprintf(cmd.OutOrStdout(), "sending GET %s from %d workers every %s, stats on %s\n", c.URL, c.Workers, c.Interval, admin)
			c.Run(cmd.Context())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.URL, "url", "", "what to request (required)")
	f.IntVar(&c.Workers, "workers", 2, "concurrent request loops")
	f.DurationVar(&c.Interval, "interval", 20*time.Millisecond, "pause between the requests of a loop")
	f.DurationVar(&c.Timeout, "timeout", 2*time.Second, "timeout of one request")
	f.StringVar(&admin, "admin", fmt.Sprintf(":%d", calibrate.AdminPort), "address of /readyz and /stats")
	return cmd
}
