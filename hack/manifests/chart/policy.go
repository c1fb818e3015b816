package chart

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/podgrace/podgrace/pkg/policy"
)

// FromPolicy returns the chart files generated from pkg/policy.ConfigFields,
// by path relative to the repository root: values.yaml with its `config:`
// block (the last top-level key) rewritten, values.schema.json with its
// `config` property rewritten (the rest of both files is left as written),
// and the config checks of templates/_config.tpl.
func FromPolicy(chartDir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	valuesPath := filepath.Join(chartDir, "values.yaml")
	values, err := os.ReadFile(valuesPath)
	if err != nil {
		return nil, err
	}
	block, err := policy.ValuesYAML()
	if err != nil {
		return nil, err
	}
	loc := regexp.MustCompile(`(?m)^config:\n`).FindIndex(values)
	if loc == nil {
		return nil, fmt.Errorf("%s has no top-level config: key", valuesPath)
	}
	rest := values[loc[0]:]
	if next := regexp.MustCompile(`(?m)^\S`).FindIndex(rest[len("config:\n"):]); next != nil {
		return nil, fmt.Errorf("%s: config: must be the last top-level key (it is generated from pkg/policy/configfields.go)", valuesPath)
	}
	files[filepath.Join(Path, "values.yaml")] = append(append([]byte(nil), values[:loc[0]]...), block...)

	schemaPath := filepath.Join(chartDir, "values.schema.json")
	schema, err := os.ReadFile(schemaPath)
	if err != nil {
		return nil, err
	}
	compact, err := policy.ConfigSchema()
	if err != nil {
		return nil, err
	}
	m := regexp.MustCompile(`(?m)^( *)"config": `).FindSubmatchIndex(schema)
	if m == nil {
		return nil, fmt.Errorf("%s has no \"config\" property", schemaPath)
	}
	start := m[1]
	end, err := objectEnd(schema, start)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", schemaPath, err)
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, compact, string(schema[m[2]:m[3]]), "  "); err != nil {
		return nil, err
	}
	out := append(append(append([]byte(nil), schema[:start]...), indented.Bytes()...), schema[end:]...)
	if !json.Valid(out) {
		return nil, fmt.Errorf("%s: the spliced schema is not valid JSON", schemaPath)
	}
	files[filepath.Join(Path, "values.schema.json")] = out
	files[ConfigChecksFile] = ConfigChecks()
	return files, nil
}

// objectEnd returns the offset just past the JSON object starting at start.
func objectEnd(data []byte, start int) (int, error) {
	dec := json.NewDecoder(bytes.NewReader(data[start:]))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return 0, err
	}
	return start + int(dec.InputOffset()), nil
}
