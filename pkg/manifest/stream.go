package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

// A unit is one value kubectl's stream decoder reads: a YAML document
// between `---` lines or one JSON value of a JSON stream. Its bytes are
// src[start:end]: a unit podgrace does not change is copied from there, byte
// for byte, and a changed one replaces exactly that range, so everything
// between units (separators, comments, whitespace) is left as it was.
type unit struct {
	start, end int
	isJSON     bool
	// text is what the decoder parses: for YAML, the lines with their line
	// ends normalized to \n (as its line reader does).
	text []byte
	// crlf: the document's lines end in \r\n, and a rewrite keeps them so.
	crlf bool
	// raw is the JSON the decoder produced (runtime.RawExtension.Raw,
	// trimmed); nil when kubectl skips the unit (empty, comments, null).
	raw []byte
}

// jsonPeek is how much of the stream kubectl looks at to guess JSON
// (cli-runtime's StreamVisitor passes 4096 to NewYAMLOrJSONDecoder).
const jsonPeek = 4096

// splitStream cuts a stream into units exactly as
// k8s.io/apimachinery/pkg/util/yaml.YAMLOrJSONDecoder does (a JSON stream when
// it starts with `{`; after at most one JSON value a failure switches to
// YAML), but keeps where each unit lies in src. TestSplitStreamAgrees and
// FuzzInject check it against the decoder itself. It holds every unit; the
// injection walks them with eachUnit instead, one at a time.
func splitStream(src []byte) ([]unit, error) {
	var units []unit
	err := eachUnit(src, func(u *unit) error {
		units = append(units, *u)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return units, nil
}

// eachUnit calls fn on every unit of src in order, as soon as it is cut, and
// stops at the first error (a stream error, or fn's). fn must not keep u:
// only one unit is alive at a time, so that memory does not grow with the
// number of documents (docs/reference/cli.md).
func eachUnit(src []byte, fn func(u *unit) error) error {
	off := 0
	if utilyaml.IsJSONBuffer(src[:min(len(src), jsonPeek)]) {
		dec := json.NewDecoder(bytes.NewReader(src))
		count := 0
		for {
			var raw json.RawMessage
			err := dec.Decode(&raw)
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				if count > 1 {
					return fmt.Errorf("document %d: %w", count+1, err)
				}
				// The decoder rewinds to the end of the last JSON value,
				// eats whitespace up to the first newline and reads YAML.
				next, werr := skipWhitespaceLine(src, off)
				if werr != nil {
					return fmt.Errorf("document %d: %w", count+1, err)
				}
				return eachYAML(src, next, count, fn)
			}
			count++
			end := int(dec.InputOffset())
			u := unit{start: end - len(raw), end: end, isJSON: true, text: src[end-len(raw) : end]}
			if !bytes.Equal(raw, []byte("null")) { // runtime.RawExtension keeps no null
				u.raw = bytes.TrimSpace(raw)
			}
			if err := fn(&u); err != nil {
				return err
			}
			off = end
		}
	}
	return eachYAML(src, 0, 0, fn)
}

// skipWhitespaceLine mirrors YAMLOrJSONDecoder.consumeWhitespace, which
// reads four bytes at a time and gives up (the stream then fails) when fewer
// remain.
func skipWhitespaceLine(src []byte, off int) (int, error) {
	for off+4 <= len(src) {
		r, sz := utf8.DecodeRune(src[off : off+4])
		if r == utf8.RuneError {
			return 0, errors.New("invalid utf8 rune")
		}
		if !unicode.IsSpace(r) {
			return off, nil
		}
		off += sz
		if r == '\n' {
			return off, nil
		}
	}
	return 0, io.EOF
}

// eachYAML mirrors utilyaml.YAMLReader (documents end at a line starting
// with `---`, followed by nothing but a comment) over bufio.Reader.ReadLine
// (which drops a line's \n or \r\n) and YAMLToJSONDecoder, calling fn on
// each document.
func eachYAML(src []byte, off, before int, fn func(u *unit) error) error {
	var text bytes.Buffer
	start := off
	n := before
	flush := func(end int) error {
		if text.Len() == 0 {
			return nil
		}
		n++
		u := unit{start: start, end: end, text: bytes.Clone(text.Bytes()), crlf: bytes.Contains(src[start:end], []byte("\r\n"))}
		var ext runtime.RawExtension
		if err := sigsyaml.Unmarshal(u.text, &ext); err != nil {
			return fmt.Errorf("document %d: invalid YAML: %w", n, err)
		}
		if raw := bytes.TrimSpace(ext.Raw); len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
			u.raw = raw
		}
		text.Reset()
		return fn(&u)
	}
	for off < len(src) {
		lineEnd := bytes.IndexByte(src[off:], '\n')
		next := len(src)
		content := src[off:]
		if lineEnd >= 0 {
			next = off + lineEnd + 1
			content = src[off : off+lineEnd]
			content = bytes.TrimSuffix(content, []byte("\r"))
		}
		if bytes.HasPrefix(content, []byte("---")) {
			rest := strings.TrimSpace(string(content[3:]))
			if rest != "" && rest[0] != '#' {
				return fmt.Errorf("document %d: invalid Yaml document separator: %s", n+1, rest)
			}
			if text.Len() != 0 {
				if err := flush(off); err != nil {
					return err
				}
				off = next
				start = off
				continue
			}
			// A separator that opens a document is part of its text.
		}
		text.Write(content)
		text.WriteByte('\n')
		off = next
	}
	return flush(len(src))
}

// object is one object kubectl would send, as it decodes it.
type object struct {
	// unit indexes the unit (document) it came from; path is where it sits
	// in the unit's JSON: "" or /items/N.
	unit int
	path string
	obj  *unstructured.Unstructured
}

// objectsOf decodes a unit's JSON as kubectl's builder does
// (unstructured.UnstructuredJSONScheme, then cli-runtime's
// FlattenListVisitor: any object with an `items` list is a List, whose items
// lacking both kind and apiVersion take the List's, minus "List"). kubectl
// cannot read a List nested in a List (meta.ExtractList fails on it), so
// neither does podgrace.
func objectsOf(unitIndex int, raw []byte) ([]object, error) {
	obj, _, err := unstructured.UnstructuredJSONScheme.Decode(raw, nil, nil)
	if err != nil {
		return nil, err
	}
	// cli-runtime's metadataValidatingDecoder: the metadata must decode as
	// ObjectMeta (FuzzInject found `metadata: 0000`).
	var objMeta struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata,omitempty"`
	}
	if err := utiljson.Unmarshal(raw, &objMeta); err != nil {
		return nil, err
	}
	list, ok := obj.(*unstructured.UnstructuredList)
	if !ok {
		u := obj.(*unstructured.Unstructured)
		if u.IsList() {
			return nil, errors.New("kubectl cannot read it: an object with an items list")
		}
		return []object{{unit: unitIndex, obj: u}}, nil
	}
	out := make([]object, 0, len(list.Items))
	for i := range list.Items {
		item := &list.Items[i]
		if meta.IsListType(item) {
			return nil, fmt.Errorf("items[%d]: kubectl cannot read a List nested in a List", i)
		}
		if item.GetKind() == "" || item.GetAPIVersion() == "" {
			return nil, fmt.Errorf("items[%d]: kubectl cannot read it: kind or apiVersion missing", i)
		}
		out = append(out, object{unit: unitIndex, path: fmt.Sprintf("/items/%d", i), obj: item})
	}
	return out, nil
}

// kubectlObjects is what `kubectl apply -f` reads from a stream: the real
// decoder (utilyaml.NewYAMLOrJSONDecoder into runtime.RawExtension, as
// cli-runtime's StreamVisitor), each value flattened by objectsOf. It checks
// podgrace's own output before a byte of it is printed.
func kubectlObjects(stream []byte) ([]*unstructured.Unstructured, error) {
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(stream), jsonPeek)
	var out []*unstructured.Unstructured
	for i := 1; ; i++ {
		var ext runtime.RawExtension
		if err := d.Decode(&ext); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		raw := bytes.TrimSpace(ext.Raw)
		if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
			continue
		}
		objs, err := objectsOf(i, raw)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		for _, o := range objs {
			out = append(out, o.obj)
		}
	}
}
