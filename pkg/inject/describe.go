package inject

import (
	"fmt"
	"strings"
)

// Describe says in words what a pass changed: one phrase per change, from
// the status record of the pass (reports after the first skip are this
// pass's own). The webhook's warn mode and `podgrace audit` print the same
// phrases, so a warning and an audit line read alike.
func Describe(before *Status, after *Status) []string {
	skip := 0
	if before != nil {
		skip = len(before.Containers)
	}
	var out []string
	for i := skip; i < len(after.Containers); i++ {
		r := &after.Containers[i]
		if r.PreStopSleep > 0 {
			how := ""
			if r.Hook == "exec" {
				how = " (exec)"
			}
			out = append(out, fmt.Sprintf("add preStop sleep %ds%s to %s", r.PreStopSleep, how, r.Name))
		}
		switch r.ExecForm {
		case "":
		case "drop-shell":
			out = append(out, "drop the shell of "+r.Name+" (exec form)")
		default:
			out = append(out, "put exec before "+r.Name+"'s command (exec form)")
		}
		if r.Image != "" {
			out = append(out, "pin "+r.Name+" to "+digestOf(r.Image))
		}
	}
	if after.GraceAfter != after.GraceBefore && (before == nil || before.GraceAfter != after.GraceAfter) {
		out = append(out, fmt.Sprintf("raise terminationGracePeriodSeconds %d→%d", after.GraceBefore, after.GraceAfter))
	}
	return out
}

func digestOf(ref string) string {
	if _, d, ok := strings.Cut(ref, "@"); ok {
		return d
	}
	return ref
}
