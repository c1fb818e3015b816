package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	sigsyaml "sigs.k8s.io/yaml"
)

// Print writes the report as a table ("" or "wide"), json or yaml. The table
// goes to out; errors the scan met go to errOut, as kubectl prints them.
func Print(r *Report, format string, out, errOut io.Writer) error {
	switch format {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "yaml":
		b, err := sigsyaml.Marshal(r)
		if err != nil {
			return err
		}
		_, err = out.Write(b)
		return err
	case "", "wide":
	default:
		return fmt.Errorf("output format %q: use json, yaml or wide (default: a table)", format)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	header := "NAMESPACE\tWORKLOAD\tSERVED\tPODS (PODGRACE/ALL)\tPODGRACE WOULD\tRISKS"
	if format == "wide" {
		header += "\tUNMUTATED SINCE"
	}
	_, _ = fmt.Fprintln(tw, header)
	for i := range r.Workloads {
		w := &r.Workloads[i]
		pods := "-"
		if w.Pods != nil {
			pods = strconv.Itoa(w.Pods.Mutated) + "/" + strconv.Itoa(w.Pods.Total)
		}
		line := strings.Join([]string{orDash(w.Namespace), w.Kind + "/" + w.Name, string(w.Served), pods, compactChanges(w), compactRisks(w)}, "\t")
		if format == "wide" {
			since := "-"
			if w.Pods != nil && len(w.Pods.UnmutatedPods) > 0 {
				since = w.Pods.UnmutatedPods[0].Created.UTC().Format("2006-01-02T15:04:05Z")
			}
			line += "\t" + since
		}
		_, _ = fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range r.Errors {
		where := e.Resource
		if e.Namespace != "" {
			where += " in namespace " + e.Namespace
		}
		if e.Document > 0 {
			where += fmt.Sprintf(" document %d", e.Document)
		}
		_, _ = fmt.Fprintf(errOut, "error: %s: %s\n", where, e.Message)
	}
	for i := range r.Workloads {
		w := &r.Workloads[i]
		for _, e := range w.Errors {
			_, _ = fmt.Fprintf(errOut, "error: %s/%s/%s: %s\n", orDash(w.Namespace), w.Kind, w.Name, e)
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// compactChanges is the table's short form of a workload's changes.
func compactChanges(w *Workload) string {
	m := w.Mutation
	switch {
	case len(w.Errors) > 0 && m == nil:
		return "error"
	case m == nil:
		return "-"
	case m.Denied != "":
		return "deny (strict mode)"
	case len(w.Changes) == 0:
		return "nothing"
	}
	var parts []string
	for i := range m.Containers {
		c := &m.Containers[i]
		var what []string
		if c.PreStopSleep > 0 {
			what = append(what, "sleep "+strconv.FormatInt(c.PreStopSleep, 10)+"s")
		}
		if c.ExecForm != "" {
			what = append(what, c.ExecForm)
		}
		if c.Image != "" {
			what = append(what, "pin")
		}
		if len(what) > 0 {
			parts = append(parts, c.Name+": "+strings.Join(what, "+"))
		}
	}
	if m.GraceAfter != m.GraceBefore {
		parts = append(parts, fmt.Sprintf("grace %d→%ds", m.GraceBefore, m.GraceAfter))
	}
	if len(parts) == 0 {
		return "record status"
	}
	return strings.Join(parts, ", ")
}

// compactRisks lists the risks that remain.
func compactRisks(w *Workload) string {
	var parts []string
	for _, r := range w.Risks {
		if r.Remains {
			parts = append(parts, r.Type+"("+r.Container+")")
		}
	}
	parts = append(parts, compactPath(w)...)
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}
