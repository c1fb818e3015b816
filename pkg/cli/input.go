package cli

import (
	"fmt"
	"io"
	"io/fs"
	"os"
)

// DefaultMaxInputMiB is the default limit of --max-input-mib: the manifests
// `podgrace inject` and `podgrace audit -f` read, all files together. Peak
// memory of inject is under 10x the input (docs/reference/cli.md).
const DefaultMaxInputMiB = 64

// inputLimit counts what a command has read against its limit.
type inputLimit struct {
	left int64
	max  int64
}

func newInputLimit(mib int64) *inputLimit {
	return &inputLimit{left: mib << 20, max: mib << 20}
}

// read reads r whole, failing with a clear error once the input passes the
// limit instead of reading on (a symlink to /dev/zero would never end).
func (l *inputLimit) read(name string, r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, l.left+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(data)) > l.left {
		return nil, fmt.Errorf("%s: the input is over %d MiB, the limit of --max-input-mib: split it, or raise the limit (peak memory is a small multiple of the input)", name, l.max>>20)
	}
	l.left -= int64(len(data))
	return data, nil
}

// readFile reads a named file against the limit.
func (l *inputLimit) readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	return l.read(path, f)
}

// regularFile says whether a directory walk should read p: regular files,
// and symlinks to regular files. Devices, FIFOs and sockets (a `*.yaml`
// symlink to /dev/zero, a FIFO that never closes) are skipped with a reason.
func regularFile(p string, d fs.DirEntry) (ok bool, why string) {
	if d.Type().IsRegular() {
		return true, ""
	}
	if d.Type()&fs.ModeSymlink == 0 {
		return false, "not a regular file (" + d.Type().String() + ")"
	}
	st, err := os.Stat(p)
	if err != nil {
		return false, err.Error()
	}
	if !st.Mode().IsRegular() {
		return false, "a symlink to something that is not a regular file (" + st.Mode().Type().String() + ")"
	}
	return true, ""
}
