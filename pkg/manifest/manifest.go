// Package manifest applies podgrace's mutation to Kubernetes manifests
// offline: Pods and the pod templates of workload resources in a
// multi-document YAML stream. Documents that hold no pod pass through byte for
// byte, and a changed document keeps its key order and comments: only the
// core's JSON patch is applied to it.
package manifest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
)

// Options configure an offline injection.
type Options struct {
	Config *policy.Config
	// NamespaceAnnotations stand in for the namespace the manifests go to.
	NamespaceAnnotations map[string]string
	// HookAction is sleep or exec; auto counts as sleep.
	HookAction policy.HookAction
	// Images reads image configs (`--inspect-images`); nil leaves argvs that
	// come from an image alone.
	Images inject.ImageLookup
}

// DocResult reports what happened to one document.
type DocResult struct {
	// Index counts documents from 1, as a user counts them.
	Index int
	// Name is "Kind/name" (or "Kind" when unnamed).
	Name     string
	Changed  bool
	Status   inject.Status
	Warnings []string
}

// podPath says where the pod template sits in each kind that has one.
var podPath = map[string]string{
	"Pod":                   "",
	"Deployment":            "/spec/template",
	"StatefulSet":           "/spec/template",
	"DaemonSet":             "/spec/template",
	"ReplicaSet":            "/spec/template",
	"ReplicationController": "/spec/template",
	"Job":                   "/spec/template",
	"CronJob":               "/spec/jobTemplate/spec/template",
}

// Inject reads a multi-document YAML stream and returns it with every pod
// mutated. On any error nothing is returned but the error, which names the
// document: a half-written stream must never reach kubectl apply.
func Inject(ctx context.Context, r io.Reader, o Options) ([]byte, []DocResult, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var out bytes.Buffer
	var results []DocResult
	for i := 1; ; i++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("document %d: %w", i, err)
		}
		doc, res, err := injectDoc(ctx, raw, o)
		if err != nil {
			return nil, nil, fmt.Errorf("document %d%s: %w", i, nameSuffix(res.Name), err)
		}
		res.Index = i
		if i > 1 {
			out.WriteString("---\n")
		}
		out.Write(doc)
		if len(doc) > 0 && doc[len(doc)-1] != '\n' {
			out.WriteByte('\n')
		}
		results = append(results, res)
	}
	return out.Bytes(), results, nil
}

func nameSuffix(n string) string {
	if n == "" {
		return ""
	}
	return " (" + n + ")"
}

// typeMeta is the part of a document needed to know what it is.
type typeMeta struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

func injectDoc(ctx context.Context, raw []byte, o Options) ([]byte, DocResult, error) {
	var res DocResult
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("---")) {
		return raw, res, nil
	}
	var node yaml.Node
	if err := yaml.Unmarshal(raw, &node); err != nil {
		return nil, res, fmt.Errorf("invalid YAML: %w", err)
	}
	if node.Kind == 0 { // only comments
		return raw, res, nil
	}
	var tm typeMeta
	if err := sigsyaml.Unmarshal(raw, &tm); err != nil {
		return nil, res, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	res.Name = tm.Kind
	if tm.Metadata.Name != "" {
		res.Name += "/" + tm.Metadata.Name
	}
	prefix, ok := podPath[tm.Kind]
	if !ok {
		return raw, res, nil
	}
	pod, err := podAt(raw, prefix)
	if err != nil {
		return nil, res, err
	}
	result := inject.Pod(ctx, inject.PodInput{
		Pod: pod, NamespaceAnnotations: o.NamespaceAnnotations, Config: o.Config, HookAction: o.HookAction, Images: o.Images,
	})
	res.Warnings, res.Status = result.Warnings, result.Status
	if result.Denied != "" {
		return nil, res, errors.New(result.Denied)
	}
	if !result.Changed() {
		return raw, res, nil
	}
	res.Changed = true
	if err := applyPatch(&node, prefix, result.Patch); err != nil {
		return nil, res, err
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if compactSequences(raw) {
		enc.CompactSeqIndent()
	}
	if err := enc.Encode(&node); err != nil {
		return nil, res, err
	}
	return buf.Bytes(), res, enc.Close()
}

// podAt decodes the pod (or the pod template, as a pod) at prefix.
func podAt(raw []byte, prefix string) (*corev1.Pod, error) {
	var obj map[string]any
	if err := sigsyaml.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	cur := any(obj)
	for _, t := range strings.Split(strings.TrimPrefix(prefix, "/"), "/") {
		if t == "" {
			continue
		}
		m, _ := cur.(map[string]any)
		cur = m[t]
	}
	if cur == nil {
		return nil, fmt.Errorf("no pod template at %s", prefix)
	}
	js, err := json.Marshal(cur)
	if err != nil {
		return nil, err
	}
	var pod corev1.Pod
	if err := json.Unmarshal(js, &pod); err != nil {
		return nil, fmt.Errorf("pod template: %w", err)
	}
	return &pod, nil
}

// compactSequences reports whether a document writes list items at the
// indentation of their key (`containers:\n- name: app`, kubectl's style) rather
// than indented under it, so that a changed document keeps its style. With
// no list to judge by, it says compact.
func compactSequences(raw []byte) bool {
	compact, indented := 0, 0
	lines := strings.Split(string(raw), "\n")
	for i := 0; i+1 < len(lines); i++ {
		key := strings.TrimRight(lines[i], " ")
		if !strings.HasSuffix(key, ":") || strings.HasPrefix(strings.TrimSpace(key), "#") {
			continue
		}
		next := lines[i+1]
		item := strings.TrimLeft(next, " ")
		if !strings.HasPrefix(item, "- ") && item != "-" {
			continue
		}
		keyIndent := len(key) - len(strings.TrimLeft(key, " "))
		if len(next)-len(item) == keyIndent {
			compact++
		} else {
			indented++
		}
	}
	return compact >= indented
}
