// Package imageconfig reads the Entrypoint, Cmd, Shell and User of a
// container image from its registry (docs/design.md §5 step 1, §6): when a
// container has no command, the argv that runs comes from the image. It
// fetches manifests and config blobs only, caches by digest, tag and
// credential, and turns every failure into an Err* sentinel meaning "do not
// rewrite". docs/develop/internals.md explains the caches, why their keys hold the
// credential, multi-arch images and pinning.
package imageconfig
