package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"

	sigsyaml "sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/pkg/inject"
)

// applyPatch applies JSON patch operations (paths from the document's root)
// to a YAML document node in place, so that everything podgrace did not
// change (key order, comments, quoting) stays as the user wrote it. Only the
// operations the core emits are supported: add (object member or existing
// array element) and remove. What it cannot edit safely it refuses, and the
// caller writes the document from its decoded form: an alias (editing through
// it would change every place that uses the anchor), a merge key or a
// duplicate key on the path (which member kubectl reads is not the one found
// first).
func applyPatch(doc *yaml.Node, ops []inject.PatchOp) error {
	for _, op := range ops {
		tokens := splitPointer(op.Path)
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
			if err := remove(parent, last); err != nil {
				return fmt.Errorf("remove %s: %w", op.Path, err)
			}
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

// walk descends to the node at tokens.
func walk(n *yaml.Node, tokens []string) (*yaml.Node, error) {
	if n.Kind == yaml.DocumentNode {
		n = n.Content[0]
	}
	for _, t := range tokens {
		if err := plainNode(n); err != nil {
			return nil, err
		}
		switch n.Kind {
		case yaml.MappingNode:
			child, err := lookup(n, t)
			if err != nil {
				return nil, err
			}
			if child == nil {
				return nil, fmt.Errorf("no member %q", t)
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
	if err := plainNode(n); err != nil {
		return nil, err
	}
	return n, nil
}

// plainNode refuses what an in-place edit cannot handle.
func plainNode(n *yaml.Node) error {
	switch {
	case n.Kind == yaml.AliasNode:
		return errors.New("an alias on the path")
	case n.Anchor != "":
		return fmt.Errorf("anchor &%s on the path", n.Anchor)
	case n.Tag != "" && n.Style&yaml.TaggedStyle != 0:
		return fmt.Errorf("explicit tag %s on the path", n.Tag)
	}
	return nil
}

// lookup finds a mapping's member, refusing merge and duplicate keys.
func lookup(m *yaml.Node, key string) (*yaml.Node, error) {
	var found *yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			return nil, errors.New("a merge key or a non-string key on the path")
		}
		if k.Value == key {
			if found != nil {
				return nil, fmt.Errorf("duplicate key %q", key)
			}
			found = m.Content[i+1]
		}
	}
	return found, nil
}

func set(parent *yaml.Node, key string, v *yaml.Node) error {
	switch parent.Kind {
	case yaml.MappingNode:
		old, err := lookup(parent, key)
		if err != nil {
			return err
		}
		if old == nil {
			parent.Content = append(parent.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
			return nil
		}
		if err := plainNode(old); err != nil {
			return err
		}
		keepStyle(old, v)
		for i := 1; i < len(parent.Content); i += 2 {
			if parent.Content[i] == old {
				parent.Content[i] = v
			}
		}
		return nil
	case yaml.SequenceNode:
		i, err := strconv.Atoi(key)
		if err != nil || i < 0 || i >= len(parent.Content) {
			return fmt.Errorf("no element %q", key)
		}
		keepStyle(parent.Content[i], v)
		parent.Content[i] = v
		return nil
	}
	return fmt.Errorf("cannot set %q on a scalar", key)
}

func remove(parent *yaml.Node, key string) error {
	if parent.Kind != yaml.MappingNode {
		return fmt.Errorf("cannot remove %q from a non-object", key)
	}
	if _, err := lookup(parent, key); err != nil {
		return err
	}
	for i := 0; i+1 < len(parent.Content); i += 2 {
		if parent.Content[i].Value == key {
			parent.Content = append(parent.Content[:i], parent.Content[i+2:]...)
			return nil
		}
	}
	return nil
}

// keepStyle carries what the user wrote over to the value that replaces
// theirs: a list keeps its flow or block style, its comments, and every
// element it already had (quotes and all); a changed element keeps the
// quoting of the one it replaces.
func keepStyle(old, v *yaml.Node) {
	v.HeadComment, v.LineComment, v.FootComment = old.HeadComment, old.LineComment, old.FootComment
	if old.Kind != v.Kind {
		return
	}
	switch v.Kind {
	case yaml.SequenceNode:
		v.Style = old.Style & yaml.FlowStyle
		for i, item := range v.Content {
			if i >= len(old.Content) {
				if old.Style&yaml.FlowStyle != 0 && item.Kind == yaml.ScalarNode && item.Tag == "!!str" {
					item.Style = yaml.DoubleQuotedStyle
				}
				continue
			}
			o := old.Content[i]
			if o.Kind == yaml.ScalarNode && item.Kind == yaml.ScalarNode && o.Value == item.Value && o.Tag == item.Tag && o.Anchor == "" {
				v.Content[i] = o
				continue
			}
			keepStyle(o, item)
		}
	case yaml.ScalarNode:
		if v.Tag == "!!str" && old.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0 {
			v.Style = old.Style & (yaml.SingleQuotedStyle | yaml.DoubleQuotedStyle)
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

// blockStyle clears the flow style the JSON form parsed into and quotes
// every string that kubectl would not read back as that string.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && !plainReadsBack(n.Value) {
		n.Style = yaml.DoubleQuotedStyle
		if !strings.ContainsFunc(n.Value, func(r rune) bool { return r == '\'' || !unicode.IsPrint(r) }) {
			n.Style = yaml.SingleQuotedStyle
		}
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// plainReadsBack reports whether s, written as a plain scalar, is read back
// as the string s by kubectl's YAML decoder (sigs.k8s.io/yaml, YAML 1.1):
// there `yes`, `on`, `y`, `0x1F` or `1_000` are not strings, whatever YAML
// 1.2 (go.yaml.in/yaml/v3, which writes the output) says.
func plainReadsBack(s string) bool {
	if s == "" || strings.ContainsAny(s, "\n\r\t") || strings.TrimSpace(s) != s {
		return false
	}
	var got any
	if err := sigsyaml.Unmarshal([]byte("- "+s), &got); err != nil {
		return false
	}
	return reflect.DeepEqual(got, []any{s})
}
