package integration

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/internal/freeport"
	"github.com/podgrace/podgrace/pkg/webhook"
)

// process is a `podgrace webhook` process: the built binary, as the chart
// runs it, against the suite's API server.
type process struct {
	cmd    *exec.Cmd
	addr   string // 127.0.0.1:PORT of the webhook
	probes string
	log    *bytes.Buffer
}

// buildPodgrace builds the podgrace binary into the test's temporary directory.
func buildPodgrace(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "podgrace")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/podgrace").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startProcess starts `podgrace webhook` with the suite's serving certificate
// and args, and waits until it is ready. It is stopped (SIGTERM) at cleanup.
func startProcess(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	ports, err := freeport.Take(3)
	if err != nil {
		t.Fatal(err)
	}
	p := &process{
		addr:   "127.0.0.1:" + strconv.Itoa(ports[0]),
		probes: "http://127.0.0.1:" + strconv.Itoa(ports[2]),
		log:    &bytes.Buffer{},
	}
	args = append([]string{"webhook",
		"--kubeconfig", writeKubeconfig(t, restConfig),
		"--cert-dir", certDir,
		"--port", strconv.Itoa(ports[0]),
		"--metrics-bind-address", "127.0.0.1:" + strconv.Itoa(ports[1]),
		"--health-probe-bind-address", "127.0.0.1:" + strconv.Itoa(ports[2]),
		"--namespace", "default", "--no-events", "--drain-delay", "0s",
	}, args...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-exited
			t.Errorf("podgrace webhook still running 30s after SIGTERM")
		}
		if t.Failed() {
			t.Logf("podgrace webhook's log:\n%s", p.log.String())
		}
	})
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("podgrace webhook exited: %v\n%s", p.cmd.ProcessState, p.log.String())
		default:
		}
		resp, err := http.Get(p.probes + "/readyz") //nolint:noctx // a local probe
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("podgrace webhook not ready after a minute\n%s", p.log.String())
	return nil
}

// memory reads a field of the process's /proc status in bytes (VmRSS: now,
// VmHWM: its peak).
func (p *process) memory(t *testing.T, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, p.cmd.Process.Pid)
	return 0
}

// chartMemoryLimit is the webhook container's memory limit in the chart's
// values.yaml.
func chartMemoryLimit(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("../../charts/podgrace/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		Resources corev1.ResourceRequirements `json:"resources"`
	}
	if err := sigsyaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	q, ok := values.Resources.Limits[corev1.ResourceMemory]
	if !ok || q.IsZero() {
		t.Fatal("the chart's values set no memory limit for the webhook")
	}
	return q.Value()
}

// bigReview is an AdmissionReview of a legitimate but large pod: n
// containers with shell-form commands and environment, about 1 KiB each.
func bigReview(t *testing.T, uid string, n int) []byte {
	t.Helper()
	var cs []corev1.Container
	for i := range n {
		c := shellContainer(fmt.Sprintf("c%d", i), "exec app --port 8080")
		for j := range 8 {
			c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("VAR_%d", j), Value: strings.Repeat("v", 64)})
		}
		cs = append(cs, c)
	}
	p := pod("big", 30, cs...)
	p.Namespace = mainNamespace // the API server always sets it
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID(uid), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: mainNamespace, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWebhookProcessMemory drives the real `podgrace webhook` process with
// issue 23's attacks on the webhook port at once: hundreds of connections
// declaring a 7 MiB body and sending only headers (finding 1), slow bodies
// trickling in, and more concurrent admissions of large pods than the
// in-flight cap. The process's peak resident memory (VmHWM, the kernel's
// count) stays under 60% of the chart's memory limit (with the default
// limits it peaks near 130 MiB of 256Mi: about 40 MiB at rest, the held
// bodies and their decoding, and some 60 KiB per TLS connection), and a
// real review is still answered at once: mutated, or refused with a 503
// the API server handles by failurePolicy when the attack holds the body
// budget (docs/operate/security.md).
func TestWebhookProcessMemory(t *testing.T) {
	limit := chartMemoryLimit(t)
	p := startProcess(t, buildPodgrace(t))
	idle := p.memory(t, "VmRSS")
	tlsConf := tlsAssets.clientTLS()
	dial := func() (*tls.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", p.addr, tlsConf)
	}
	header := "POST " + webhook.Path + " HTTP/1.1\r\nHost: podgrace\r\nContent-Type: application/json\r\nContent-Length: 7340032\r\n\r\n"

	var wg sync.WaitGroup
	stop := make(chan struct{})
	var dialErrs, answered, refused atomic.Int64
	// attack runs f on n connections of its own, counting failed dials.
	attack := func(n int, f func(c *tls.Conn)) {
		for range n {
			wg.Go(func() {
				c, err := dial()
				if err != nil {
					dialErrs.Add(1)
					return
				}
				defer func() { _ = c.Close() }()
				f(c)
			})
		}
	}
	// Finding 1: header-only connections.
	const headerOnly = 300
	attack(headerOnly, func(c *tls.Conn) {
		_, _ = io.WriteString(c, header+"{")
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, _ = io.Copy(io.Discard, c) // until the server's read deadline closes it
	})
	// Slow bodies: 7 MiB declared, 64 KiB every 50 ms.
	const slow = 100
	attack(slow, func(c *tls.Conn) {
		if _, err := io.WriteString(c, header+`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"`); err != nil {
			return
		}
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(chunk); err != nil {
				return // answered 503 or cut at the read deadline
			}
		}
	})
	// More concurrent admissions of large pods (~500 KiB reviews) than
	// --max-in-flight admits, over and over.
	big := bigReview(t, "big", 400)
	const admitters = 300
	for range admitters {
		wg.Go(func() {
			client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}
			defer client.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Post("https://"+p.addr+webhook.Path, "application/json", bytes.NewReader(big))
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					answered.Add(1)
				} else {
					refused.Add(1)
				}
			}
		})
	}

	// A real pod is still mutated under the attack.
	var peakRSS int64
	small := bigReview(t, "small", 1)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}
	defer client.CloseIdleConnections()
	mutated, failedFast := 0, 0
	for end := time.Now().Add(12 * time.Second); time.Now().Before(end); {
		peakRSS = max(peakRSS, p.memory(t, "VmRSS"))
		resp, err := client.Post("https://"+p.addr+webhook.Path, "application/json", bytes.NewReader(small))
		if err == nil {
			body, _ := io.ReadAll(bufio.NewReader(resp.Body))
			_ = resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"patch"`)):
				mutated++
			case resp.StatusCode == http.StatusServiceUnavailable:
				failedFast++
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	hwm := p.memory(t, "VmHWM")
	t.Logf("chart limit %s; RSS idle %d MiB, sampled peak %d MiB, VmHWM %d MiB; %d big admissions answered, %d refused; %d small ones mutated, %d answered 503; %d dials failed",
		resource.NewQuantity(limit, resource.BinarySI), idle>>20, peakRSS>>20, hwm>>20, answered.Load(), refused.Load(), mutated, failedFast, dialErrs.Load())
	if hwm > limit*6/10 {
		t.Errorf("peak RSS %d MiB under attack: over 60%% of the chart's memory limit (%d MiB)", hwm>>20, limit>>20)
	}
	if mutated+failedFast == 0 {
		t.Error("no real review was answered (a patch or a 503) under the attack")
	}
	if answered.Load() == 0 {
		t.Error("no large admission was answered: the attack did not reach the handler")
	}
}
