// Package version holds podgrace's version, set at build time with
// -ldflags "-X github.com/podgrace/podgrace/pkg/version.Version=…".
package version

// Version is the release, or "dev" for a local build.
var Version = "dev"
