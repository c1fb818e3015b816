package policy

import (
	"fmt"
	"net/netip"
	"regexp"
)

// Bounds of imageInspection.cacheBytes: at least room for many configs of
// the largest argv podgrace copies (pkg/imageconfig.MaxArgvBytes); past 1Gi
// it is a typo, not a tuning (docs/operate/security.md sizes it against the chart's
// memory limit).
const (
	MinImageCacheBytes = 1 << 20
	MaxImageCacheBytes = 1 << 30
)

// registryPattern is a registry as an image reference names it, host or
// host:port (an IPv6 address in brackets), lowercase; a leading "*." matches
// any subdomain. Plain-HTTP registries are named exactly (no wildcard).
var (
	registryPattern = regexp.MustCompile(`^(\*\.)?([a-z0-9]([-a-z0-9.]*[a-z0-9])?|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$`)
	registryExact   = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$`)
)

// validateNetwork checks the registry lists and the denied networks.
func (i *ImageInspection) validateNetwork() []error {
	var errs []error
	for _, l := range []struct {
		key  string
		list []string
		re   *regexp.Regexp
		want string
	}{
		{"allowedRegistries", i.AllowedRegistries, registryPattern, "host, host:port or *.domain"},
		{"deniedRegistries", i.DeniedRegistries, registryPattern, "host, host:port or *.domain"},
		{"insecureRegistries", i.InsecureRegistries, registryExact, "host or host:port, exactly as the image references write it"},
	} {
		for k, r := range l.list {
			if !l.re.MatchString(r) {
				errs = append(errs, fmt.Errorf("imageInspection.%s[%d]: %q is not a registry (%s, lowercase)", l.key, k, r, l.want))
			}
		}
	}
	for k, n := range i.DeniedNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			errs = append(errs, fmt.Errorf("imageInspection.deniedNetworks[%d]: %q is not a CIDR (10.0.0.0/8, fd00::/8)", k, n))
		}
	}
	return errs
}
