// Package images builds the small container images the e2e cluster and tests
// need, with go-containerregistry and without a registry or a Docker engine:
// static Go binaries (and, for the shell-form image, Debian's dash with the
// shared libraries ldd lists) in one layer, a config with the Entrypoint/Cmd
// the test needs, written as an OCI image-layout tarball that `ctr images
// import` loads into containerd.
package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/podgrace/podgrace/internal/ocilayout"
)

// Image references. The "localhost/" prefix never resolves to a registry, and
// every pod that uses these images sets imagePullPolicy: Never or
// IfNotPresent (the tags are not "latest"), so containerd never tries a pull.
const (
	PauseRef      = "localhost/podgrace-e2e/pause:v1"
	TestServerRef = "localhost/podgrace-e2e/testserver:v1"
	ShellFormRef  = "localhost/podgrace-e2e/shellform:v1"
	TrafficRef    = "localhost/podgrace-e2e/traffic:v1"
)

// Paths of the binaries in the TrafficRef image.
const (
	TrafficApp       = "/usr/local/bin/app"       // testserver (--graceful, --db)
	TrafficIngress   = "/usr/local/bin/ingress"   // the EndpointSlice-watching reverse proxy
	TrafficMeshProxy = "/usr/local/bin/meshproxy" // the linkerd-proxy stand-in
	TrafficTCPProxy  = "/usr/local/bin/tcpproxy"  // the cloud-sql-proxy stand-in and its database
)

// ShellFormCmd is the shell-form CMD of the ShellFormRef image, byte for byte
// what `docker build` records for a Debian-based image built from
// `CMD app --port 8080`.
var ShellFormCmd = []string{"/bin/sh", "-c", "app --port 8080"}

// debianPath is the PATH a debian:bookworm base image sets.
const debianPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// File is one entry of an image's single layer.
type File = ocilayout.File

// Spec describes an image: one layer of Files, and the runtime config.
type Spec struct {
	Ref    string
	Files  []File
	Config v1.Config
}

// Image builds the image (linux/amd64, OCI media types). The layer is
// deterministic: the same Spec gives the same digest.
func (s Spec) Image() (v1.Image, error) {
	layer, err := ocilayout.Layer(s.Files)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = s.Config
	return mutate.ConfigFile(img, cf)
}

// baseFiles is the skeleton every image gets: the directories a runtime
// expects and a passwd/group so that user lookups work.
func baseFiles() []File {
	return []File{
		{Path: "/tmp", Dir: true, Mode: 0o1777},
		{Path: "/dev", Dir: true}, {Path: "/proc", Dir: true}, {Path: "/sys", Dir: true},
		{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")},
		{Path: "/etc/group", Data: []byte("root:x:0:\nnogroup:x:65534:\n")},
	}
}

// Import loads an image archive (OCI layout or docker-archive tarball) into
// containerd's k8s.io namespace, where the kubelet's CRI looks for images.
func Import(ctx context.Context, ctr, address, archive string) error {
	cmd := exec.CommandContext(ctx, ctr, "--address", address, "--namespace", "k8s.io",
		"images", "import", archive)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s images import %s: %w\n%s", ctr, archive, err, out)
	}
	return nil
}

// Push writes img to a plain-HTTP registry (the e2e's loopback registry).
func Push(ctx context.Context, ref string, img v1.Image) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(r, img, remote.WithContext(ctx))
}

// GoBinary builds a static linux/amd64 binary of pkg (a package path of the
// module in moduleDir) and returns its bytes.
func GoBinary(ctx context.Context, moduleDir, pkg string) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "e2eimages-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	out := filepath.Join(tmp, "bin")
	goCmd := os.Getenv("GO")
	if goCmd == "" {
		goCmd = "go"
	}
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return os.ReadFile(out)
}

// HostExecutable returns hostPath placed at imagePath plus every shared
// library `ldd` lists for it (including the dynamic loader), each at the
// path ldd names, so that the dynamically linked host binary runs inside a
// scratch image.
func HostExecutable(ctx context.Context, hostPath, imagePath string) ([]File, error) {
	data, err := os.ReadFile(hostPath)
	if err != nil {
		return nil, err
	}
	files := []File{{Path: imagePath, Data: data, Mode: 0o755}}
	out, err := exec.CommandContext(ctx, "ldd", hostPath).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", hostPath, err)
	}
	for _, lib := range parseLdd(string(out)) {
		b, err := os.ReadFile(lib) // follows symlinks: the image gets the real file
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: lib, Data: b, Mode: 0o755})
	}
	return files, nil
}

// parseLdd extracts the absolute library paths from ldd output:
//
//	linux-vdso.so.1 (0x...)                           -> skipped (in the kernel)
//	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...) -> /lib/x86_64-linux-gnu/libc.so.6
//	/lib64/ld-linux-x86-64.so.2 (0x...)               -> /lib64/ld-linux-x86-64.so.2
func parseLdd(out string) []string {
	var libs []string
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 3 && fields[1] == "=>" && strings.HasPrefix(fields[2], "/"):
			libs = append(libs, fields[2])
		case len(fields) >= 1 && strings.HasPrefix(fields[0], "/"):
			libs = append(libs, fields[0])
		}
	}
	return libs
}

// Pause is the pod sandbox image (containerd's sandbox_image).
func Pause(pauseBin []byte) Spec {
	return Spec{
		Ref:    PauseRef,
		Files:  append(baseFiles(), File{Path: "/pause", Data: pauseBin, Mode: 0o755}),
		Config: v1.Config{Entrypoint: []string{"/pause"}, Env: []string{"PATH=/"}},
	}
}

// TestServer is the naive server in exec form: ENTRYPOINT ["app"],
// CMD ["--port", "8080"]; SIGTERM reaches it directly.
func TestServer(serverBin []byte) Spec {
	return Spec{
		Ref:   TestServerRef,
		Files: append(baseFiles(), File{Path: "/usr/local/bin/app", Data: serverBin, Mode: 0o755}),
		Config: v1.Config{
			Entrypoint: []string{"/usr/local/bin/app"},
			Cmd:        []string{"--port", "8080"},
			Env:        []string{debianPath},
		},
	}
}

// ShellForm is the same server in an image whose config is what a
// Debian-based `CMD app --port 8080` produces: no Entrypoint and
// Cmd ["/bin/sh", "-c", "app --port 8080"], with Debian's dash as /bin/sh.
// dash forks app and waits; as PID 1 it ignores SIGTERM, so the app never
// sees the signal unless the command is rewritten into exec form.
func ShellForm(ctx context.Context, serverBin []byte) (Spec, error) {
	dash := "/usr/bin/dash"
	if _, err := os.Stat(dash); err != nil {
		dash = "/bin/dash"
	}
	dashFiles, err := HostExecutable(ctx, dash, "/bin/dash")
	if err != nil {
		return Spec{}, fmt.Errorf("copying Debian's dash (apt-get install dash): %w", err)
	}
	files := append(baseFiles(), dashFiles...)
	files = append(files,
		File{Path: "/bin/sh", Link: "dash"},
		File{Path: "/usr/local/bin/app", Data: serverBin, Mode: 0o755},
	)
	return Spec{
		Ref:    ShellFormRef,
		Files:  files,
		Config: v1.Config{Cmd: append([]string(nil), ShellFormCmd...), Env: []string{debianPath}},
	}, nil
}

// Traffic holds the programs of the traffic-path tests (ingress proxy,
// mesh and database sidecars, the app) in one image, each started by an
// exec-form command in the pod spec.
func Traffic(bins map[string][]byte) Spec {
	files := baseFiles()
	for _, path := range []string{TrafficApp, TrafficIngress, TrafficMeshProxy, TrafficTCPProxy} {
		files = append(files, File{Path: path, Data: bins[path], Mode: 0o755})
	}
	return Spec{Ref: TrafficRef, Files: files, Config: v1.Config{Env: []string{debianPath}}}
}

// Package paths of the binaries the images carry.
const (
	PausePkg      = "github.com/podgrace/podgrace/test/e2e/images/pause"
	TestServerPkg = "github.com/podgrace/podgrace/test/e2e/images/testserver"
	IngressPkg    = "github.com/podgrace/podgrace/test/e2e/images/ingress"
	MeshProxyPkg  = "github.com/podgrace/podgrace/test/e2e/images/meshproxy"
	TCPProxyPkg   = "github.com/podgrace/podgrace/test/e2e/images/tcpproxy"
)

// Build builds the named images ("pause", "testserver", "shellform",
// "traffic") from
// the module in moduleDir and writes each as DIR/NAME.tar. It returns the
// archive paths by name and the built images by reference.
func Build(ctx context.Context, moduleDir, dir string, names ...string) (map[string]string, map[string]v1.Image, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	var serverBin []byte
	server := func() ([]byte, error) {
		if serverBin != nil {
			return serverBin, nil
		}
		b, err := GoBinary(ctx, moduleDir, TestServerPkg)
		serverBin = b
		return b, err
	}
	archives, imgs := map[string]string{}, map[string]v1.Image{}
	for _, n := range names {
		var spec Spec
		switch n {
		case "pause":
			b, err := GoBinary(ctx, moduleDir, PausePkg)
			if err != nil {
				return nil, nil, err
			}
			spec = Pause(b)
		case "testserver":
			b, err := server()
			if err != nil {
				return nil, nil, err
			}
			spec = TestServer(b)
		case "shellform":
			b, err := server()
			if err != nil {
				return nil, nil, err
			}
			if spec, err = ShellForm(ctx, b); err != nil {
				return nil, nil, err
			}
		case "traffic":
			bins := map[string][]byte{}
			for path, pkg := range map[string]string{TrafficIngress: IngressPkg, TrafficMeshProxy: MeshProxyPkg, TrafficTCPProxy: TCPProxyPkg} {
				b, err := GoBinary(ctx, moduleDir, pkg)
				if err != nil {
					return nil, nil, err
				}
				bins[path] = b
			}
			b, err := server()
			if err != nil {
				return nil, nil, err
			}
			bins[TrafficApp] = b
			spec = Traffic(bins)
		default:
			return nil, nil, fmt.Errorf("unknown image %q (known: pause, testserver, shellform, traffic)", n)
		}
		img, err := spec.Image()
		if err != nil {
			return nil, nil, fmt.Errorf("image %s: %w", n, err)
		}
		file := filepath.Join(dir, n+".tar")
		if err := ocilayout.WriteArchive(file, spec.Ref, img); err != nil {
			return nil, nil, fmt.Errorf("image %s: %w", n, err)
		}
		archives[n], imgs[spec.Ref] = file, img
	}
	return archives, imgs, nil
}
