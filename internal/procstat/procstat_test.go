package procstat

import (
	"os"
	"testing"
	"time"
)

func TestCPUTime(t *testing.T) {
	before, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel has charged at least one more tick.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		after, err := CPUTime(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after > before {
			return
		}
	}
	t.Fatalf("CPU time stayed at %v over 5 s of spinning", before)
}

func TestCPUTimeNoProcess(t *testing.T) {
	if _, err := CPUTime(-1); err == nil {
		t.Fatal("no error for pid -1")
	}
}

// TestMemory: this process's resident memory grows by what it touches, and
// its peak is at least its resident memory.
func TestMemory(t *testing.T) {
	rss, hwm, err := Memory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss <= 0 || hwm < rss {
		t.Fatalf("VmRSS %d, VmHWM %d bytes", rss, hwm)
	}
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = 1
	}
	after, _, err := Memory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after < rss+32<<20 {
		t.Errorf("VmRSS %d -> %d bytes after touching 64 MiB", rss, after)
	}
	if buf[len(buf)-1] != 1 {
		t.Fatal("unreachable")
	}
	if _, _, err := Memory(-1); err == nil {
		t.Error("no error for pid -1")
	}
}
