//go:build scale

package storm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/podgrace/podgrace/internal/procstat"
)

// proc is a webhook process the test started.
type proc struct {
	name   string
	port   int // the webhook's HTTPS port
	health int // podgrace's probe port (0 for the floor server)
	metric int // podgrace's metrics port (0 for the floor server)
	cmd    *exec.Cmd
	log    string
	done   chan struct{}
	exited time.Time
	err    error
}

// startProc starts bin with args, logging to workDir/name.log; the test's
// cleanup stops it.
func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(workDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		p.exited = time.Now()
		_ = f.Close()
		close(p.done)
	}()
	t.Cleanup(p.stop)
	return p
}

// waitReady waits until the process listens on its webhook port and, for
// podgrace, answers /readyz.
func (p *proc) waitReady(ctx context.Context) error {
	c := &http.Client{Timeout: 2 * time.Second}
	defer c.CloseIdleConnections()
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("%s exited: %w (log %s)", p.name, p.err, p.log)
		default:
		}
		conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)), time.Second)
		if err != nil {
			return false, nil //nolint:nilerr // not listening yet
		}
		_ = conn.Close()
		if p.health == 0 {
			return true, nil
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/readyz", p.health), nil)
		if err != nil {
			return false, err
		}
		resp, err := c.Do(req)
		if err != nil {
			return false, nil //nolint:nilerr // not serving yet
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// cpuTime is the CPU time (user and system, all threads) the process has
// used: from /proc/PID/stat while it runs, from its rusage once it has
// exited.
func (p *proc) cpuTime() (time.Duration, error) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime(), nil
	default:
	}
	return procstat.CPUTime(p.cmd.Process.Pid)
}

// stop sends SIGTERM and waits for the process, killing it after 30 s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// counters sums, per family, the counters (or the histograms' sample
// counts) of a Prometheus text exposition whose labels satisfy keep. A
// family that is not exposed (a vector nothing was counted in yet) is 0.
// With by set, it also sums them per value of that label, as
// "name{by=value}"; a histogram also gets the samples above each bucket's
// bound, as "name>bound".
func counters(body []byte, keep func(labels map[string]string) bool, by string, names ...string) (map[string]float64, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, name := range names {
		out[name] = 0
		for _, m := range fams[name].GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if !keep(labels) {
				continue
			}
			v := m.GetCounter().GetValue()
			if h := m.GetHistogram(); h != nil {
				v = float64(h.GetSampleCount())
				for _, b := range h.GetBucket() {
					out[fmt.Sprintf("%s>%g", name, b.GetUpperBound())] += float64(h.GetSampleCount() - b.GetCumulativeCount())
				}
			}
			out[name] += v
			if by != "" {
				out[fmt.Sprintf("%s{%s=%s}", name, by, labels[by])] += v
			}
		}
	}
	return out, nil
}

// scrape reads a process's /metrics on its metrics port.
func (p *proc) scrape(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", p.metric), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s /metrics: %s", p.name, resp.Status)
	}
	return io.ReadAll(resp.Body)
}
