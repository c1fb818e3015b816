package inject

import (
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podgrace/podgrace/pkg/execform"
)

// rewriteShellForm rewrites a container's shell-form argv into exec form
// (docs/design.md §5). The argv is the container's command when it has one, else
// the image's Entrypoint, then args, or the image's Cmd when the container
// sets neither. An argv that comes from the image is copied into the pod,
// `$` escaped for the kubelet, and the image pinned to the inspected digest
// so the command always matches the image that runs.
func (m *mutation) rewriteShellForm(idx int, init bool, r *ContainerReport) {
	field, list := "containers", m.pod.Spec.Containers
	if init {
		field, list = "initContainers", m.pod.Spec.InitContainers
	}
	c := &list[idx]
	in := execform.Input{Command: c.Command, Args: c.Args, Defined: definedFor(c, m.pod.Spec.EnableServiceLinks)}
	var img *ImageInfo
	if len(c.Command) == 0 {
		info, ok := m.in.Images[c.Image]
		switch {
		case !ok:
			r.ExecFormSkipped = SkipImageNotInspected
			return
		case info.Err != nil:
			r.ExecFormSkipped = SkipImageLookup
			m.warnf(WarnImageUnreadable, "%s: exec-form left alone: image config of %s unreadable: %v", c.Name, c.Image, info.Err)
			return
		}
		img = &info
		in.Command = escapeAll(info.Entrypoint)
		if len(c.Args) == 0 {
			in.Args = escapeAll(info.Cmd)
		}
	}
	if len(in.Command) == 0 && len(in.Args) == 0 {
		r.ExecFormSkipped = SkipNoArgv
		return
	}
	out := execform.Rewrite(in)
	if out.Kind == execform.KindNone {
		r.ExecFormSkipped = string(out.Reason)
		if out.Reason.Warn() {
			detail := out.Detail
			if detail == "" {
				detail = string(out.Reason)
			}
			m.warnf(WarnShellFormKept, "%s: shell-form command kept: %s", c.Name, detail)
		}
		return
	}
	base := "/spec/" + field + "/" + strconv.Itoa(idx)
	r.ExecForm = string(out.Kind)
	if img != nil && len(c.Args) == 0 {
		// The image's Cmd was in effect: once the pod sets a command the
		// kubelet ignores the image's Cmd, so the whole argv goes into command.
		out.Command, out.Args = append(slices.Clip(out.Command), out.Args...), nil
	}
	if !slices.Equal(out.Command, c.Command) {
		c.Command = out.Command
		m.add(base+"/command", c.Command)
	}
	if !slices.Equal(out.Args, c.Args) {
		if len(out.Args) == 0 {
			c.Args = nil
			m.patch = append(m.patch, removeOp(base+"/args"))
		} else {
			c.Args = out.Args
			m.add(base+"/args", c.Args)
		}
	}
	if img != nil && m.in.Config.ImageInspection.PinDigest && img.Pinned != "" && img.Pinned != c.Image {
		c.Image = img.Pinned
		r.Image = img.Pinned
		m.add(base+"/image", c.Image)
	}
}

// definedFor tells execform which $(NAME) references the kubelet will expand
// in this container: its env names, every name when envFrom may define more,
// and the service link variables (FOO_SERVICE_HOST, FOO_PORT_80_TCP …) when
// service links are on (the default).
func definedFor(c *corev1.Container, serviceLinks *bool) func(string) bool {
	if len(c.EnvFrom) > 0 {
		return func(string) bool { return true }
	}
	links := serviceLinks == nil || *serviceLinks
	return func(name string) bool {
		for i := range c.Env {
			if c.Env[i].Name == name {
				return true
			}
		}
		return links && (strings.HasSuffix(name, "_SERVICE_HOST") || strings.Contains(name, "_SERVICE_PORT") || strings.Contains(name, "_PORT"))
	}
}

func escapeAll(ss []string) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = execform.EscapeForKubelet(s)
	}
	return out
}
