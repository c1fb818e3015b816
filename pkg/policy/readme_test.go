package policy

import (
	"encoding/json"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The README's reference tables are generated from Keys and ConfigFields;
// `make golden` (REFRESH_GOLDEN=true) rewrites them, and this test fails when
// they are stale.
func TestREADMEReference(t *testing.T) {
	const path = "../../README.md"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	for _, sec := range []struct{ name, body string }{{"keys", ReferenceTable()}, {"config", ConfigTable()}} {
		begin, end := "<!-- BEGIN GENERATED: "+sec.name+" -->\n", "<!-- END GENERATED: "+sec.name+" -->"
		i, j := strings.Index(readme, begin), strings.Index(readme, end)
		if i < 0 || j < i {
			t.Fatalf("README.md lacks the %q markers", sec.name)
		}
		if got := readme[i+len(begin) : j]; got != sec.body {
			if os.Getenv("REFRESH_GOLDEN") != "true" {
				t.Errorf("README.md's %s table is stale (run `make golden`):\n%s", sec.name, sec.body)
				continue
			}
			readme = readme[:i+len(begin)] + sec.body + readme[j:]
		}
	}
	if os.Getenv("REFRESH_GOLDEN") == "true" {
		if err := os.WriteFile(path, []byte(readme), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// ConfigFields documents every leaf of Config, and nothing else.
func TestConfigFieldsComplete(t *testing.T) {
	t.Parallel()
	d := Default()
	raw, _ := json.Marshal(&d)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	var leaves []string
	var walk func(prefix string, v map[string]any)
	walk = func(prefix string, v map[string]any) {
		for k, x := range v {
			if sub, ok := x.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			leaves = append(leaves, prefix+k)
		}
	}
	walk("", m)
	var documented []string
	for _, f := range ConfigFields {
		documented = append(documented, f.Path)
	}
	sort.Strings(leaves)
	sort.Strings(documented)
	if strings.Join(leaves, ",") != strings.Join(documented, ",") {
		t.Errorf("ConfigFields = %v\nConfig has   %v", documented, leaves)
	}
}

// docs/reference/cli.md's table of duration bounds is generated from durationBounds;
// `make golden` rewrites it.
func TestGoldenDocsDurationBounds(t *testing.T) {
	const path = "../../docs/reference/cli.md"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	begin, end := "<!-- BEGIN GENERATED: duration bounds -->\n", "<!-- END GENERATED: duration bounds -->"
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the duration bounds markers", path)
	}
	body := DurationBoundsTable()
	if doc[i+len(begin):j] == body {
		return
	}
	if os.Getenv("REFRESH_GOLDEN") != "true" {
		t.Fatalf("%s's duration bounds are stale (run `make golden`):\n%s", path, body)
	}
	if err := os.WriteFile(path, []byte(doc[:i+len(begin)]+body+doc[j:]), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ConfigFields keeps the fields of one nested object together (values.yaml
// and the schema are generated in its order), and every schema is JSON.
func TestConfigFieldsGenerate(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	cur := ""
	for _, f := range ConfigFields {
		g, _ := group(f.Path)
		if g != cur && seen[g] {
			t.Errorf("%s: the fields of %q are not together", f.Path, g)
		}
		seen[g], cur = true, g
	}
	s, err := ConfigSchema()
	if err != nil || !json.Valid(s) {
		t.Fatalf("ConfigSchema: %v\n%s", err, s)
	}
	y, err := ValuesYAML()
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal([]byte(y), &values); err != nil {
		t.Fatalf("ValuesYAML is not YAML: %v\n%s", err, y)
	}
	doc, _ := yaml.Marshal(values["config"])
	c, err := ParseConfig(doc)
	if err != nil || !reflect.DeepEqual(c, Default()) {
		t.Errorf("ValuesYAML does not read back as Default: %v\n%s", err, y)
	}
}
