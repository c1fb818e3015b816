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
