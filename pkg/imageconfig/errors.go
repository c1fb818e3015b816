package imageconfig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// The errors Inspect returns, each testable with errors.Is. Every one of them
// means "do not rewrite"; none of them is a reason to deny a pod. The error
// Inspect returns also wraps the underlying cause (a *transport.Error, a
// net.Error, context.DeadlineExceeded …) for logs.
var (
	// ErrTimeout: the registry did not answer within Options.Timeout.
	ErrTimeout = errors.New("registry did not answer in time")
	// ErrNotFound: the repository, tag or digest does not exist, or the
	// index has no image for the requested platform.
	ErrNotFound = errors.New("image not found")
	// ErrUnauthorized: the registry refused the credentials (or the lack of
	// them), or the keychain could not produce any.
	ErrUnauthorized = errors.New("not authorized to read the image")
	// ErrPlatformsDisagree: a multi-arch image whose linux platforms have
	// different Entrypoint, Cmd or Shell, and the request did not pick one.
	ErrPlatformsDisagree = errors.New("the image's linux platforms disagree on Entrypoint/Cmd/Shell")
	// ErrNotLinux: the image (or the requested platform) is not linux.
	ErrNotLinux = errors.New("image has no linux platform")
	// ErrInvalidReference: Request.Image is not a valid image reference.
	ErrInvalidReference = errors.New("invalid image reference")
	// ErrTooLarge: the image's argv exceeds MaxArgvBytes, or its index
	// lists more manifests than podgrace considers: left alone.
	ErrTooLarge = errors.New("image config too large")
	// ErrRegistry: anything else that went wrong talking to the registry
	// (connection refused, 5xx, a malformed manifest, an oversized config).
	ErrRegistry = errors.New("registry error")
)

// Error kinds, as ErrorKind returns them: stable strings for metric labels.
const (
	KindTimeout           = "timeout"
	KindNotFound          = "not-found"
	KindUnauthorized      = "unauthorized"
	KindPlatformsDisagree = "platforms-disagree"
	KindNotLinux          = "not-linux"
	KindInvalidReference  = "invalid-reference"
	KindRegistry          = "registry"
	KindTooLarge          = "too-large"
	KindRefused           = "refused"
	// KindCanceled is the caller's own context being canceled (not our
	// deadline): the admission request went away.
	KindCanceled = "canceled"
)

// ErrorKind names err's kind for a metric label: one of the Kind* constants,
// or "" for a nil error. An error this package did not produce is "registry".
func ErrorKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrTimeout):
		return KindTimeout
	case errors.Is(err, ErrNotFound):
		return KindNotFound
	case errors.Is(err, ErrUnauthorized):
		return KindUnauthorized
	case errors.Is(err, ErrPlatformsDisagree):
		return KindPlatformsDisagree
	case errors.Is(err, ErrNotLinux):
		return KindNotLinux
	case errors.Is(err, ErrInvalidReference):
		return KindInvalidReference
	case errors.Is(err, ErrTooLarge):
		return KindTooLarge
	case errors.Is(err, ErrRefused):
		return KindRefused
	case errors.Is(err, context.Canceled):
		return KindCanceled
	default:
		return KindRegistry
	}
}

// kinded reports whether err already carries one of our sentinels.
func kinded(err error) bool {
	for _, s := range []error{ErrTimeout, ErrNotFound, ErrUnauthorized, ErrPlatformsDisagree, ErrNotLinux, ErrInvalidReference, ErrTooLarge, ErrRefused, ErrRegistry} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// classify wraps an error from go-containerregistry (or the network) in the
// sentinel that describes it. ctx is the context the failed call ran under:
// once its deadline has passed, whatever the transport said, it was a
// timeout. Errors that already carry a sentinel are returned unchanged.
func classify(ctx context.Context, err error) error {
	if err == nil || kinded(err) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		for _, d := range terr.Errors {
			switch d.Code {
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return fmt.Errorf("%w: %w", ErrUnauthorized, err)
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return fmt.Errorf("%w: %w", ErrNotFound, err)
			}
		}
		switch terr.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%w: %w", ErrUnauthorized, err)
		case http.StatusNotFound:
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		}
	}
	return fmt.Errorf("%w: %w", ErrRegistry, err)
}

// cacheable reports whether an error came from talking to the registry and
// so is worth remembering for ErrorTTL. Errors computed from cached data
// (platforms disagree, not linux) are recomputed for free instead.
func cacheable(err error) bool {
	switch ErrorKind(err) {
	case KindTimeout, KindNotFound, KindUnauthorized, KindRegistry, KindRefused, KindTooLarge:
		return true
	}
	return false
}

// registryDown reports whether err says the registry itself is down rather
// than that one image is unreadable: it did not answer in time, or it
// could not be reached (DNS, connection refused or reset). Inspect then
// skips the registry for every image for ErrorTTL.
func registryDown(err error) bool {
	switch ErrorKind(err) {
	case KindTimeout:
		return true
	case KindRegistry:
		var op *net.OpError
		var dns *net.DNSError
		return errors.As(err, &op) || errors.As(err, &dns)
	}
	return false
}
