package manifest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/podgrace/podgrace/pkg/inject"
)

// applyPatch applies the core's JSON patch to a YAML document node in place,
// so that everything podgrace did not change (key order, comments, quoting)
// stays as the user wrote it. prefix is where the pod sits in the document
// (e.g. /spec/template for a Deployment). Only the operations the core emits
// are supported: add (object member or existing array element) and remove.
// Missing intermediate objects are created: a manifest may omit a pod
// template's metadata entirely, which the API server would have defaulted.
func applyPatch(doc *yaml.Node, prefix string, ops []inject.PatchOp) error {
	for _, op := range ops {
		tokens := splitPointer(prefix + op.Path)
		parent, err := walk(doc, tokens[:len(tokens)-1])
		if err != nil {
			return fmt.Errorf("%s %s: %w", op.Operation, op.Path, err)
		}
		last := tokens[len(tokens)-1]
		switch op.Operation {
		case "add":
			v, err := toNode(op.Value)
			if err != nil {
				return err
			}
			if err := set(parent, last, v); err != nil {
				return fmt.Errorf("add %s: %w", op.Path, err)
			}
		case "remove":
			remove(parent, last)
		default:
			return fmt.Errorf("unsupported patch operation %q", op.Operation)
		}
	}
	return nil
}

func splitPointer(p string) []string {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, s := range parts {
		parts[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(s)
	}
	return parts
}

// walk descends to the node at tokens, creating missing mappings.
func walk(n *yaml.Node, tokens []string) (*yaml.Node, error) {
	if n.Kind == yaml.DocumentNode {
		n = n.Content[0]
	}
	for _, t := range tokens {
		switch n.Kind {
		case yaml.MappingNode:
			child := lookup(n, t)
			if child == nil || isNull(child) {
				m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
				if err := set(n, t, m); err != nil {
					return nil, err
				}
				child = m
			}
			n = child
		case yaml.SequenceNode:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(n.Content) {
				return nil, fmt.Errorf("no element %q", t)
			}
			n = n.Content[i]
		default:
			return nil, fmt.Errorf("%q is not an object or a list", t)
		}
	}
	return n, nil
}

func lookup(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func set(parent *yaml.Node, key string, v *yaml.Node) error {
	switch parent.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(parent.Content); i += 2 {
			if parent.Content[i].Value == key {
				parent.Content[i+1] = v
				return nil
			}
		}
		parent.Content = append(parent.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
		return nil
	case yaml.SequenceNode:
		i, err := strconv.Atoi(key)
		if err != nil || i < 0 || i >= len(parent.Content) {
			return fmt.Errorf("no element %q", key)
		}
		parent.Content[i] = v
		return nil
	}
	return fmt.Errorf("cannot set %q on a scalar", key)
}

func remove(parent *yaml.Node, key string) {
	if parent.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(parent.Content); i += 2 {
		if parent.Content[i].Value == key {
			parent.Content = append(parent.Content[:i], parent.Content[i+2:]...)
			return
		}
	}
}

// toNode turns a patch value into a block-style YAML node, through its JSON
// form so that the API's field names are used.
func toNode(v any) (*yaml.Node, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	n := doc.Content[0]
	blockStyle(n)
	return n, nil
}

// blockStyle clears the flow style the JSON form parsed into; the encoder
// quotes any string that would otherwise read back as another type.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}
