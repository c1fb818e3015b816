//go:build bench

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// loadResult is hack/loadgen's -json output.
type loadResult struct {
	Requests   int     `json:"requests"`
	Answered   int     `json:"answered"`
	Errors     int     `json:"errors"`
	Seconds    float64 `json:"seconds"`
	Throughput float64 `json:"throughput"`
	P50        float64 `json:"p50_ms"`
	P90        float64 `json:"p90_ms"`
	P99        float64 `json:"p99_ms"`
	P999       float64 `json:"p999_ms"`
	Max        float64 `json:"max_ms"`
	// CPUPerAdmission is the server's CPU time over the whole run divided
	// by every admission it answered, warm-up included.
	CPUPerAdmission time.Duration `json:"-"`
}

// load runs hack/loadgen against s with the typical pod.
func load(b *testing.B, s *server, conns int, rate float64, d time.Duration) loadResult {
	b.Helper()
	cpu0, err := s.cpuTime()
	if err != nil {
		b.Fatal(err)
	}
	args := []string{"-url", s.url, "-cacert", caFile, "-c", strconv.Itoa(conns),
		"-rate", strconv.FormatFloat(rate, 'f', -1, 64), "-duration", d.String(), "-warmup", "1s", "-json", typicalReview}
	ctx, cancel := context.WithTimeout(b.Context(), d+time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, loadgenBin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("loadgen %v: %v\n%s%s", args, err, stdout.Bytes(), stderr.Bytes())
	}
	cpu1, err := s.cpuTime()
	if err != nil {
		b.Fatal(err)
	}
	var r loadResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		b.Fatalf("loadgen output %q: %v", stdout.Bytes(), err)
	}
	r.CPUPerAdmission = (cpu1 - cpu0) / time.Duration(r.Answered)
	return r
}

// sampleRSS records the highest VmRSS of s until stop is called.
func sampleRSS(s *server) (stop func() int64) {
	var (
		peak int64
		wg   sync.WaitGroup
	)
	done := make(chan struct{})
	wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if rss, _, err := s.memory(); err == nil {
				peak = max(peak, rss)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() int64 {
		close(done)
		wg.Wait()
		return peak
	}
}

// rounds runs measure on every server (the floor, podgrace and its
// variants), rotating which goes first each round, and returns each one's
// results. With two servers the order simply flips.
func rounds(n int, measure func(s *server) loadResult) map[string][]loadResult {
	out := map[string][]loadResult{}
	all := servers()
	for i := range n {
		for j := range all {
			s := all[(i+j)%len(all)]
			out[s.name] = append(out[s.name], measure(s))
		}
	}
	return out
}

func medianOf(rs []loadResult, f func(loadResult) float64) float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return median(xs)
}

// pairedRatio is the median over the rounds of a's f divided by b's in
// the same round.
func pairedRatio(res map[string][]loadResult, a, b string, f func(loadResult) float64) float64 {
	var xs []float64
	for i := range res[a] {
		xs = append(xs, f(res[a][i])/f(res[b][i]))
	}
	return median(xs)
}

func median(xs []float64) float64 {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs[len(xs)/2]
}

const mib = 1024.0

// BenchmarkHTTPS loads podgrace and the transport floor with hack/loadgen.
//
//   - throughput: closed loop on 8 keep-alive connections, 7 rounds of 3 s
//     each (after 1 s of warm-up); the median admissions/s and each
//     server's CPU time per admission. Both servers' RSS is sampled
//     meanwhile.
//   - rate1000: open loop at 1,000 admissions/s on 16 connections, 11
//     rounds of 3 s; the median of each percentile over the rounds.
//
// Other processes on a shared machine take the CPU in bursts of seconds, so
// the ratios are medians over the rounds of podgrace's value divided by the
// floor's in the same round (paired, as in BenchmarkHandlerRatio): one
// burst does not decide them. The CPU ratio is the steadiest: it does not
// depend on who else had the CPU.
func BenchmarkHTTPS(b *testing.B) {
	b.Run("throughput", func(b *testing.B) {
		peak := map[string]int64{}
		res := rounds(7, func(s *server) loadResult {
			stop := sampleRSS(s)
			r := load(b, s, 8, 0, 3*time.Second)
			peak[s.name] = max(peak[s.name], stop())
			b.Logf("%-18s %6.0f admissions/s  p50 %.2f ms  p99 %.2f ms  %3.0f µs server CPU/admission  (%d requests)",
				s.name, r.Throughput, r.P50, r.P99, float64(r.CPUPerAdmission)/float64(time.Microsecond), r.Requests)
			return r
		})
		tp := func(r loadResult) float64 { return r.Throughput }
		pg, fl := medianOf(res["podgrace"], tp), medianOf(res["floor"], tp)
		_, hwm, err := podgrace.memory()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(pg, "podgrace-adm/s")
		b.ReportMetric(fl, "floor-adm/s")
		b.ReportMetric(pairedRatio(res, "podgrace", "floor", tp), "podgrace/floor")
		cpu := func(r loadResult) float64 { return float64(r.CPUPerAdmission) / float64(time.Microsecond) }
		b.ReportMetric(medianOf(res["podgrace"], cpu), "podgrace-cpu-µs/adm")
		b.ReportMetric(medianOf(res["floor"], cpu), "floor-cpu-µs/adm")
		b.ReportMetric(pairedRatio(res, "podgrace", "floor", cpu), "podgrace/floor-cpu")
		b.ReportMetric(float64(idleRSS["podgrace"])/mib, "podgrace-idle-MiB")
		b.ReportMetric(float64(peak["podgrace"])/mib, "podgrace-load-MiB")
		b.ReportMetric(float64(hwm)/mib, "podgrace-peak-MiB")
		b.ReportMetric(float64(idleRSS["floor"])/mib, "floor-idle-MiB")
		b.ReportMetric(float64(peak["floor"])/mib, "floor-load-MiB")
		for _, v := range variants {
			b.ReportMetric(medianOf(res[v.name], tp), v.name+"-adm/s")
			b.ReportMetric(pairedRatio(res, v.name, "floor", tp), v.name+"/floor")
			b.ReportMetric(pairedRatio(res, "podgrace", v.name, tp), "podgrace/"+v.name)
			b.ReportMetric(medianOf(res[v.name], cpu), v.name+"-cpu-µs/adm")
			b.ReportMetric(pairedRatio(res, v.name, "floor", cpu), v.name+"/floor-cpu")
			b.ReportMetric(pairedRatio(res, "podgrace", v.name, cpu), "podgrace/"+v.name+"-cpu")
		}
		b.ReportMetric(0, "ns/op")
	})
	b.Run("rate1000", func(b *testing.B) {
		res := rounds(11, func(s *server) loadResult {
			r := load(b, s, 16, 1000, 3*time.Second)
			b.Logf("%-18s %6.0f admissions/s  p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms", s.name, r.Throughput, r.P50, r.P90, r.P99, r.P999, r.Max)
			return r
		})
		for _, q := range []struct {
			name string
			f    func(loadResult) float64
		}{
			{"p50", func(r loadResult) float64 { return r.P50 }},
			{"p99", func(r loadResult) float64 { return r.P99 }},
			{"p99.9", func(r loadResult) float64 { return r.P999 }},
		} {
			pg, fl := medianOf(res["podgrace"], q.f), medianOf(res["floor"], q.f)
			b.ReportMetric(pg, "podgrace-"+q.name+"-ms")
			b.ReportMetric(fl, "floor-"+q.name+"-ms")
			if q.name == "p99" {
				b.ReportMetric(pairedRatio(res, "podgrace", "floor", q.f), "podgrace/floor-p99")
				for _, v := range variants {
					b.ReportMetric(medianOf(res[v.name], q.f), v.name+"-p99-ms")
					b.ReportMetric(pairedRatio(res, v.name, "floor", q.f), v.name+"/floor-p99")
				}
			}
		}
		b.ReportMetric(0, "ns/op")
	})
}
