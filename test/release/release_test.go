//go:build release

// Package release tests the whole release chain (make test-release, not
// make test): make release with a throwaway cosign key, make publish to
// go-containerregistry's registry (hack/registry, referrers on) on loopback,
// make verify-release; the image index's platforms and the ELF machine of
// each image's podgrace as pulled from the registry; a second build of the
// same commit gives the same digests; the chart pulled back from the
// registry pins the image by digest; and a tampered release fails
// verification. docs/develop/release.md.
package release

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/podgrace/podgrace/test/releasecheck"
)

const version = "v0.0.0-test.1"

// root is the repository, where make runs.
var root = func() string {
	d, err := filepath.Abs("../..")
	if err != nil {
		panic(err)
	}
	return d
}()

// tool is the path of a release tool the Makefile built (make test-release
// sets it); a missing tool fails the test.
func tool(t *testing.T, env string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		t.Fatalf("%s is not set: run make test-release, which builds the tool into bin/", env)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s: %v", env, err)
	}
	return p
}

// run runs a command in the repository and returns its combined output;
// it fails the test when the command fails.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startRegistry runs hack/registry on a free loopback port until the test
// ends and returns its host:port.
func startRegistry(t *testing.T, tmp string) string {
	t.Helper()
	bin := filepath.Join(tmp, "registry")
	run(t, nil, "go", "build", "-o", bin, "./hack/registry")
	addrFile := filepath.Join(tmp, "registry.addr")
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-addr-file", addrFile)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-done:
			t.Logf("registry stopped: %v", err)
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Logf("registry killed: %v", <-done)
		}
	})
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("registry exited: %v", err)
		default:
		}
		if b, err := os.ReadFile(addrFile); err == nil {
			addr := strings.TrimSpace(string(b))
			resp, err := http.Get("http://" + addr + "/v2/")
			if err == nil {
				_ = resp.Body.Close()
				return addr
			}
		}
	}
	t.Fatal("registry did not start in 30s")
	return ""
}

func TestRelease(t *testing.T) {
	for _, env := range []string{"COSIGN", "CRANE", "HELM", "CYCLONEDX_GOMOD"} {
		tool(t, env)
	}
	cosign, helm := tool(t, "COSIGN"), tool(t, "HELM")
	tmp := t.TempDir()
	reg := startRegistry(t, tmp)

	// A throwaway key pair with an empty password.
	keys := filepath.Join(tmp, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	gen := exec.Command(cosign, "generate-key-pair")
	gen.Dir, gen.Env = keys, append(os.Environ(), "COSIGN_PASSWORD=")
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	key := filepath.Join(keys, "cosign.key")
	env := []string{"COSIGN_PASSWORD="}
	vars := func(dist string, more ...string) []string {
		return append([]string{"VERSION=" + version, "DIST=" + dist, "COSIGN_KEY=" + key, "IMAGE_REPO=" + reg + "/podgrace", "REGISTRY=" + reg}, more...)
	}

	distA, distB := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	start := time.Now()
	t.Log(run(t, env, "make", append([]string{"release"}, vars(distA)...)...))
	t.Logf("make release: %s", time.Since(start).Round(time.Second))
	start = time.Now()
	t.Log(run(t, env, "make", append([]string{"publish"}, vars(distA)...)...))
	t.Logf("make publish: %s", time.Since(start).Round(time.Second))
	start = time.Now()
	t.Log(run(t, env, "make", append([]string{"verify-release"}, vars(distA)...)...))
	t.Logf("make verify-release: %s", time.Since(start).Round(time.Second))

	digest := strings.TrimSpace(readFile(t, filepath.Join(distA, "podgrace_"+version+"_image.digest")))
	t.Run("files", func(t *testing.T) { checkFiles(t, distA) })
	t.Run("platforms", func(t *testing.T) { checkPlatforms(t, reg, digest) })
	t.Run("chart", func(t *testing.T) { checkChart(t, helm, reg, digest, tmp) })
	t.Run("air-gapped", func(t *testing.T) { checkAirGapped(t, reg, digest, tmp) })

	// The same commit built again (another directory, the build cache
	// warm) gives the same files, byte for byte: the same SHA256SUMS.
	start = time.Now()
	run(t, env, "make", append([]string{"release"}, vars(distB)...)...)
	t.Logf("second make release: %s", time.Since(start).Round(time.Second))
	if a, b := readFile(t, filepath.Join(distA, "SHA256SUMS")), readFile(t, filepath.Join(distB, "SHA256SUMS")); a != b {
		t.Errorf("two builds of the same commit differ:\n%s\n%s", a, b)
	}

	t.Run("tampered", func(t *testing.T) { checkTampered(t, env, vars, distA, tmp) })
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkFiles: the archives of every platform, SBOMs, the chart, the krew
// manifest naming each archive by its SHA-256 in SHA256SUMS, and the
// signature bundles.
func checkFiles(t *testing.T, dist string) {
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(readFile(t, filepath.Join(dist, "SHA256SUMS"))), "\n") {
		sum, file, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", line)
		}
		sums[file] = sum
	}
	krew := readFile(t, filepath.Join(dist, "podgrace.krew.yaml"))
	// make's RELEASE_PLATFORMS, when the caller narrows it.
	platforms := "linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64"
	if p := os.Getenv("RELEASE_PLATFORMS"); p != "" {
		platforms = p
	}
	for _, p := range strings.Fields(strings.ReplaceAll(platforms, "/", "_")) {
		ext := ".tar.gz"
		if strings.HasPrefix(p, "windows") {
			ext = ".zip"
		}
		archive := "podgrace_" + version + "_" + p + ext
		sum, ok := sums[archive]
		if !ok {
			t.Errorf("no %s in SHA256SUMS", archive)
			continue
		}
		if !strings.Contains(krew, "/"+archive+"\n    sha256: "+sum+"\n") {
			t.Errorf("the krew manifest does not name %s with sha256 %s", archive, sum)
		}
		if _, ok := sums["podgrace_"+version+"_"+p+".cdx.json"]; !ok {
			t.Errorf("no SBOM of %s in SHA256SUMS", p)
		}
	}
	for _, f := range []string{"podgrace-0.0.0-test.1.tgz", "podgrace_" + version + "_image.cdx.json", "podgrace.krew.yaml", "podgrace_" + version + "_image.digest"} {
		if _, ok := sums[f]; !ok {
			t.Errorf("no %s in SHA256SUMS", f)
		}
	}
	for _, f := range []string{"SHA256SUMS.sigstore.json", "podgrace-0.0.0-test.1.tgz.sigstore.json", "cosign.pub"} {
		if _, err := os.Stat(filepath.Join(dist, f)); err != nil {
			t.Error(err)
		}
	}
	if sbom := readFile(t, filepath.Join(dist, "podgrace_"+version+"_image.cdx.json")); !strings.Contains(sbom, `"bomFormat": "CycloneDX"`) || !strings.Contains(sbom, "pkg:golang/k8s.io/client-go@") {
		t.Errorf("the image SBOM is not a CycloneDX document listing podgrace's modules:\n%.500s", sbom)
	}
}

// checkPlatforms: the index pulled from the registry has a linux/amd64 and
// a linux/arm64 image, and each image's /podgrace is an ELF executable for
// that machine (the arm64 one cannot run here).
func checkPlatforms(t *testing.T, reg, digest string) {
	checked, problems, err := releasecheck.PlatformsAt(t.Context(), reg+"/podgrace@"+digest)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checked {
		t.Log(c)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// checkChart: the chart pulled back from oci://REGISTRY/charts has the
// release's version and appVersion, and its default values pin the image
// by the index's digest.
func checkChart(t *testing.T, helm, reg, digest, tmp string) {
	chartRef := "oci://" + reg + "/charts/podgrace"
	pulled := filepath.Join(tmp, "pulled")
	if err := os.MkdirAll(pulled, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, nil, helm, "pull", chartRef, "--version", strings.TrimPrefix(version, "v"), "--plain-http", "-d", pulled)
	tgz := filepath.Join(pulled, "podgrace-"+strings.TrimPrefix(version, "v")+".tgz")
	chart := run(t, nil, helm, "show", "chart", tgz)
	for _, want := range []string{"version: " + strings.TrimPrefix(version, "v") + "\n", "appVersion: " + version + "\n"} {
		if !strings.Contains(chart, want) {
			t.Errorf("helm show chart lacks %q:\n%s", want, chart)
		}
	}
	values := run(t, nil, helm, "show", "values", tgz)
	if !strings.Contains(values, "  digest: \""+digest+"\"\n") || !strings.Contains(values, "  repository: "+reg+"/podgrace\n") {
		t.Errorf("helm show values does not pin %s/podgrace@%s", reg, digest)
	}
	rendered := run(t, nil, helm, "template", "podgrace", tgz)
	if want := "image: " + reg + "/podgrace@" + digest; !regexp.MustCompile(`(?m)^\s+image: "?` + regexp.QuoteMeta(reg+"/podgrace@"+digest)).MatchString(rendered) {
		t.Errorf("the rendered chart has no %q", want)
	}
}

// checkTampered: verify-release fails on a copy of the release whose
// SHA256SUMS was edited (its signature no longer matches), and on one
// whose archive was edited (its checksum no longer matches).
func checkTampered(t *testing.T, env []string, vars func(string, ...string) []string, dist, tmp string) {
	for _, tc := range []struct{ name, file, want string }{
		{"SHA256SUMS", "SHA256SUMS", "signature"},
		{"archive", "podgrace_" + version + "_linux_amd64.tar.gz", "FAILED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			copyDir := filepath.Join(tmp, "tampered-"+tc.name)
			run(t, nil, "cp", "-a", dist, copyDir)
			p := filepath.Join(copyDir, tc.file)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if tc.file == "SHA256SUMS" {
				// A line for an added (empty) file: every checksum still
				// holds (sha256sum -c passes), only the signature can tell.
				b = append(b, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  extra-file\n"...)
				if err := os.WriteFile(filepath.Join(copyDir, "extra-file"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				b[len(b)/2] ^= 0xff
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := runErr(env, "make", append([]string{"verify-release"}, vars(copyDir, "REGISTRY=")...)...)
			if err == nil {
				t.Fatalf("make verify-release passed on a release with a modified %s:\n%s", tc.file, out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("make verify-release failed without naming the %s:\n%s", tc.want, out)
			}
		})
	}
}

// checkAirGapped runs the air-gapped install commands of
// docs/operate/install.md as written there, with the release's registry
// for ghcr.io and a second registry on loopback for registry.internal;
// the only additions are the plain-HTTP flags, and `helm template` for
// `helm install` (no cluster here). Then the copy's signatures and SBOM
// attestation verify in the second registry, and the installed chart runs
// the image by the same digest from there.
func checkAirGapped(t *testing.T, reg, digest, tmp string) {
	work, regDir := filepath.Join(tmp, "air-gapped"), filepath.Join(tmp, "internal")
	for _, d := range []string{work, regDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	internal := startRegistry(t, regDir)
	cmds := docCommands(t, filepath.Join(root, "docs", "operate", "install.md"), "### Air-gapped installs")
	subst := strings.NewReplacer(
		"ghcr.io/podgrace/charts", reg+"/charts", "ghcr.io/podgrace/podgrace", reg+"/podgrace",
		"registry.internal", internal, "$DIGEST", digest,
		"vX.Y.Z", version, "X.Y.Z", strings.TrimPrefix(version, "v"))
	var rendered string
	for _, c := range cmds {
		args := strings.Fields(subst.Replace(c))
		switch {
		case len(args) < 2:
			t.Fatalf("docs command %q", c)
		case args[0] == "cosign":
			args = append([]string{tool(t, "COSIGN"), args[1], "--allow-http-registry"}, args[2:]...)
		case args[0] == "helm":
			if args[1] == "install" {
				args[1] = "template"
			}
			args = append([]string{tool(t, "HELM"), args[1], "--plain-http"}, args[2:]...)
		default:
			t.Fatalf("the air-gapped commands in docs/operate/install.md use %s; this test runs cosign and helm only: %q", args[0], c)
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = work
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s (docs: %s): %v\n%s", strings.Join(args, " "), c, err, out)
		}
		t.Logf("ran %q", c)
		if args[1] == "template" {
			rendered = string(out)
		}
	}
	if len(cmds) < 5 || rendered == "" {
		t.Fatalf("docs/operate/install.md's air-gapped block has %d commands and no helm install: %q", len(cmds), cmds)
	}
	copied := internal + "/podgrace/podgrace@" + digest
	if want := regexp.MustCompile(`(?m)^\s+image: "?` + regexp.QuoteMeta(copied)); !want.MatchString(rendered) {
		t.Errorf("the chart installed from %s does not run %s", internal, copied)
	}
	// The index (what the chart pins and the node pulls) and every platform
	// image came across; the index's signature and SBOM attestation verify
	// there. (`cosign save` of the index carries the index's referrers, not
	// the per-platform signatures of `cosign sign --recursive`.)
	_, problems, err := releasecheck.PlatformsAt(t.Context(), copied)
	if err != nil {
		t.Fatalf("the copy: %v", err)
	}
	if len(problems) > 0 {
		t.Errorf("the copy's platforms: %v", problems)
	}
	trust := []string{"--key", filepath.Join(tmp, "a", "cosign.pub"), "--insecure-ignore-tlog",
		"--trusted-root", filepath.Join(tmp, "a", "_build", "cosign", "trusted-root.json"), "--allow-http-registry"}
	cosign := tool(t, "COSIGN")
	run(t, nil, cosign, append(append([]string{"verify"}, trust...), copied)...)
	run(t, nil, cosign, append(append([]string{"verify-attestation", "--type", "cyclonedx"}, trust...), copied)...)
	t.Logf("the copy in %s: the index's signature and SBOM attestation verify", internal)
}

// docCommands returns the commands of the first sh block after heading in
// a Markdown file: continuation lines joined, comments and blank lines
// left out.
func docCommands(t *testing.T, file, heading string) []string {
	t.Helper()
	text := readFile(t, file)
	i := strings.Index(text, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("%s has no %q", file, heading)
	}
	text = text[i:]
	start := strings.Index(text, "\n```sh\n")
	if start < 0 {
		t.Fatalf("%s: no sh block after %q", file, heading)
	}
	text = text[start+len("\n```sh\n"):]
	block, _, ok := strings.Cut(text, "\n```\n")
	if !ok {
		t.Fatalf("%s: the sh block after %q does not end", file, heading)
	}
	var cmds []string
	cur := ""
	for _, line := range strings.Split(block, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") || (line == "" && cur == "") {
			continue
		}
		if more, ok := strings.CutSuffix(line, "\\"); ok {
			cur += more + " "
			continue
		}
		cmds = append(cmds, strings.TrimSpace(cur+line))
		cur = ""
	}
	return cmds
}
