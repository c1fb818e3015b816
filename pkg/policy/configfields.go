package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ConfigField documents one leaf of Config: the one place its meaning and
// its accepted values are written. The README's table, the chart's
// values.yaml `config:` block (and from it the chart README and config/) and
// the `config` part of values.schema.json are generated from ConfigFields
// (`make golden`, `make manifests`); tests fail when any of them is stale or
// when a field of Config has no entry here.
//
// Adding a field: the struct field in Config, its default in Default, its
// check in Validate when it has one, an entry here, then `make manifests
// golden`.
type ConfigField struct {
	// Path is the dotted JSON path, e.g. imageInspection.timeout. Fields of
	// one nested object stay together.
	Path string
	Doc  string
	// Schema is the field's JSON schema (values.schema.json), in order; ""
	// for a bounded field, whose schema comes from its bound (bounds.go).
	Schema string
}

// Schemas of the common field types.
const (
	schemaBool = `{"type": "boolean"}`
	// schemaBounded: the schema comes from the field's bound (bounds.go).
	schemaBounded    = ""
	schemaRegistries = `{"type": "array", "items": {"type": "string", "pattern": "^(\\*\\.)?([a-z0-9]([-a-z0-9.]*[a-z0-9])?|\\[[0-9a-f:.]+\\])(:[0-9]{1,5})?$"}}`
)

// ConfigFields lists every cluster config field in the order the README and
// values.yaml show them.
var ConfigFields = []ConfigField{
	{"preStopSleep", "Default of `" + AnnotationPreStopSleep + "`: `auto` (sized from terminationGracePeriodSeconds), a duration (`15s`) or `off`.",
		schemaBounded},
	{"execForm", "Default of `" + AnnotationExecForm + "`: rewrite shell-form commands into exec form.", schemaBool},
	{"extendGrace", "Default of `" + AnnotationExtendGrace + "`: may terminationGracePeriodSeconds be raised so that sleep + shutdownBudget fits.", schemaBool},
	{"ratio", "`auto` sleep = clamp(ratio × terminationGracePeriodSeconds, min, max).", schemaBounded},
	{"min", "Shortest `auto` sleep.", schemaBounded},
	{"max", "Longest `auto` sleep.", schemaBounded},
	{"shutdownBudget", "Time the app needs after the sleep to stop; the grace period must cover sleep + budget.", schemaBounded},
	{"sidecarShutdownBudget", "A sidecar's own drain after its sleep, added to the grace period of a pod with a listed or native sidecar; a drain the pod declares for Istio or Linkerd replaces it (see `docs/operate/sidecars.md`).", schemaBounded},
	{"maxGracePeriod", "Highest grace period podgrace raises to (cluster-autoscaler's default limit for graceful termination); above it the sleep shrinks, with a warning. Whole seconds, at least shutdownBudget + sidecarShutdownBudget + 1s.",
		schemaBounded},
	{"sleepRunToCompletion", "Give run-to-completion pods (restartPolicy Never/OnFailure: Jobs, CronJobs) the default sleep too; an explicit pod or namespace duration applies to them anyway.", schemaBool},
	{"hookAction", "How the sleep is written: `sleep` (the native action), `exec` (`[\"sleep\",\"S\"]`, needs a sleep binary in the image) or `auto` (asks the API server at start with a dry-run pod; needs create on pods in the release namespace).",
		`{"enum": ["auto", "sleep", "exec"]}`},
	{"sidecars", "Container names treated as sidecars (mesh and database proxies, agents): a sleep that outlives the app's, never the exec-form rewrite (see `docs/operate/sidecars.md`).",
		`{"type": "array", "items": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}}`},
	{"strict", "Deny a pod with an invalid podgrace annotation instead of warning.", schemaBool},
	{"enforcement", "`mutate`, or `warn`: compute the same result but only report it (admission warnings, a log line, metrics by namespace); never patches, never denies, strict or not (see `docs/operate/audit.md`).",
		`{"enum": ["mutate", "warn"]}`},
	{"imageInspection.enabled", "Read the image config from its registry when a container's command comes from the image (to rewrite a shell-form Entrypoint/Cmd).", schemaBool},
	{"imageInspection.timeout", "Deadline of all image lookups of one admission.", schemaBounded},
	{"imageInspection.pullSecrets", "Use the pod's and its ServiceAccount's imagePullSecrets. The chart then grants podgrace read access to Secrets and ServiceAccounts in every namespace.", schemaBool},
	{"imageInspection.pinDigest", "Pin a rewritten tag-referenced image to the digest that was inspected.", schemaBool},
	{"imageInspection.tagTTL", "How long a tag → digest resolution is trusted.", schemaBounded},
	{"imageInspection.errorTTL", "How long a failed lookup is remembered.", schemaBounded},
	{"imageInspection.cacheSize", "Number of image configs cached (by digest).", schemaBounded},
	{"imageInspection.cacheBytes", "Memory the cached image configs may hold, as a quantity (`16Mi`), within [1Mi, 1Gi]; keep it well under the container's memory limit (`docs/operate/security.md`). Only Entrypoint, Cmd and Shell are kept, and an image whose argv exceeds 16 KiB is not rewritten.",
		schemaBounded},
	{"imageInspection.allowedRegistries", "Registries image inspection may ask (`host`, `host:port` or `*.domain`); empty allows any not denied.", schemaRegistries},
	{"imageInspection.deniedRegistries", "Registries image inspection never asks (same forms); they win over allowedRegistries.", schemaRegistries},
	{"imageInspection.insecureRegistries", "Registries spoken to over plain HTTP (`host` or `host:port`, as image references write them); every other registry is HTTPS only.", schemaRegistries},
	{"imageInspection.deniedNetworks", "CIDRs image inspection never connects to, checked after DNS and on every redirect, on top of loopback, link-local and cloud metadata addresses, which are always refused (`docs/operate/security.md`).",
		`{"type": "array", "items": {"type": "string"}}`},
}

// defaults returns Default as generic JSON values, by dotted path.
func defaults() map[string]any {
	d := Default()
	raw, _ := json.Marshal(&d)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	out := map[string]any{}
	var walk func(prefix string, v map[string]any)
	walk = func(prefix string, v map[string]any) {
		for k, x := range v {
			if sub, ok := x.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			out[prefix+k] = x
		}
	}
	walk("", m)
	return out
}

// shortDuration writes a Go duration the way people do: 1m, not 1m0s.
func shortDuration(s string) string {
	d, err := time.ParseDuration(s)
	if err != nil || d == 0 {
		return s
	}
	s = d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// defaultOf returns the default of a field, durations written short.
func defaultOf(f ConfigField, defs map[string]any) any {
	v := defs[f.Path]
	if s, ok := v.(string); ok && isDuration(f.Path) {
		return shortDuration(s)
	}
	return v
}

// ConfigTable renders ConfigFields with their defaults as a Markdown table.
func ConfigTable() string {
	defs := defaults()
	var b strings.Builder
	b.WriteString("| key | default | meaning |\n|---|---|---|\n")
	for _, f := range ConfigFields {
		def, _ := json.Marshal(defaultOf(f, defs))
		b.WriteString("| `" + f.Path + "` | `" + strings.Trim(string(def), `"`) + "` | " + f.Doc + " |\n")
	}
	return b.String()
}

// group splits a dotted path into its object and leaf ("" for top level).
func group(path string) (string, string) {
	if i := strings.LastIndex(path, "."); i >= 0 {
		return path[:i], path[i+1:]
	}
	return "", path
}

// ValuesYAML renders the chart's `config:` block: every field with its
// default, under a `# --` comment that the chart README is generated from.
func ValuesYAML() (string, error) {
	defs := defaults()
	var b strings.Builder
	b.WriteString("config:\n")
	cur := ""
	for _, f := range ConfigFields {
		g, leaf := group(f.Path)
		indent := "  "
		if g != "" {
			indent = "    "
			if g != cur {
				b.WriteString("  " + g + ":\n")
			}
		}
		cur = g
		b.WriteString(wrapComment(indent, f.Doc))
		var out bytes.Buffer
		enc := yaml.NewEncoder(&out)
		enc.SetIndent(2)
		if err := enc.Encode(map[string]any{leaf: defaultOf(f, defs)}); err != nil {
			return "", fmt.Errorf("%s: %w", f.Path, err)
		}
		for _, l := range strings.SplitAfter(strings.TrimSuffix(out.String(), "\n"), "\n") {
			b.WriteString(indent + strings.TrimSuffix(l, "\n") + "\n")
		}
	}
	return b.String(), nil
}

// wrapComment writes doc as a `# --` comment wrapped at 80 columns.
func wrapComment(indent, doc string) string {
	var b strings.Builder
	line := indent + "# --"
	for _, w := range strings.Fields(doc) {
		if len(line)+1+len(w) > 80 && strings.TrimSpace(line) != "#" {
			b.WriteString(line + "\n")
			line = indent + "#"
		}
		line += " " + w
	}
	b.WriteString(line + "\n")
	return b.String()
}

// ConfigSchema renders the JSON schema of the chart's `config` value
// (compact, in ConfigFields order; the generator indents it).
func ConfigSchema() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"type": "object", "additionalProperties": false, "properties": {`)
	cur := ""
	for i, f := range ConfigFields {
		schema := schemaOf(f)
		if !json.Valid([]byte(schema)) {
			return nil, fmt.Errorf("%s: invalid schema %s", f.Path, schema)
		}
		g, leaf := group(f.Path)
		if g != cur && cur != "" {
			b.WriteString("}}")
		}
		if i > 0 {
			b.WriteString(", ")
		}
		if g != cur && g != "" {
			fmt.Fprintf(&b, `%q: {"type": "object", "additionalProperties": false, "properties": {`, g)
		}
		cur = g
		fmt.Fprintf(&b, `%q: %s`, leaf, schema)
	}
	if cur != "" {
		b.WriteString("}}")
	}
	b.WriteString("}}")
	return b.Bytes(), nil
}
