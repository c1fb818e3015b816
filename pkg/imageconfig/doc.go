// Package imageconfig reads the Entrypoint, Cmd, Shell and User of a
// container image from its registry (docs/design.md §5 step 1, §6): podgrace needs
// them when a pod container has no command of its own, because then the
// argv that runs comes from the image.
//
// It fetches only manifests and config blobs (never layers) with
// go-containerregistry's remote package, anonymously unless the request
// carries a keychain (see KeychainFromSecrets). Any failure means "do not
// rewrite" and is returned as an error carrying one of the Err* sentinels;
// ErrorKind names it for metrics. The package holds no Kubernetes client:
// gathering pull secrets is the caller's job.
//
// # Caches
//
// One Inspector serves every admission request, so what it learns is shared:
//
//   - digest → config (or, for an index, its list of platforms): an LRU of
//     Options.MaxEntries without expiry, since what a digest names cannot
//     change;
//   - tag → digest: trusted for Options.TagTTL; after it a manifest HEAD
//     re-resolves the tag, and the config is fetched again only if the tag
//     moved;
//   - failures (timeouts, unreachable or refusing registries, missing
//     images): remembered for Options.ErrorTTL, so a down registry is asked
//     once per ErrorTTL rather than once per pod;
//   - in flight: any number of concurrent identical requests make one set of
//     registry requests (singleflight), and so do concurrent fetches of one
//     manifest.
//
// Every key starts with the identity of the credential used: "anonymous", or
// an HMAC (under a random per-process key) of the credential the request's
// keychain resolved for that registry. A config read with one pod's pull
// secret is therefore never handed to a pod that presents another secret or
// none: that pod must prove access itself, by its own registry request.
// Sharing by digest alone would leak a private image's Entrypoint and Cmd
// (into the pod spec and the status annotation) to any namespace that merely
// names the image. The price is one fetch per distinct credential, and
// anonymous lookups of public images, the common case, are shared by all.
// Keys also hold the repository (so proving access to one repository says
// nothing about another holding the same digest) and, for the lookup and
// error caches, the requested platform.
//
// # Multi-arch images
//
// For an index, every linux image is read (attestation manifests, non-linux
// images and nested indexes are skipped unread). If they agree on
// Entrypoint, Cmd and Shell that is the answer; otherwise ErrPlatformsDisagree,
// unless Request.Platform narrows the choice to images that agree. An index
// without a linux image, or a single image whose config is not linux, is
// ErrNotLinux. Result.Digest is the index digest, so pinning keeps the
// image multi-arch.
//
// # Pinning
//
// Result.Pinned is the reference without its tag: "reg/app:1.2" becomes
// "reg/app@sha256:…". "reg/app:1.2@sha256:…" would be more readable and the
// API server accepts any image string, and containerd pulls it (by digest,
// ignoring the tag), but CRI-O has a history of refusing the combined form
// (containers/image does not support it; CRI-O strips the tag itself, and
// 1.31.0 regressed on it), and Docker's own tooling treats the tag as a
// comment anyway. The repository is kept exactly as the pod spelled it
// ("nginx" stays "nginx", not "index.docker.io/library/nginx"), so policies
// matching image names keep matching; the caller can record the tag it
// replaced in the status annotation.
package imageconfig
