package manifest

import (
	"fmt"
	"strings"
)

type seed struct {
	src string
	// refused: podgrace must exit non-zero on it (kubectl cannot read it,
	// or podgrace cannot guarantee the invariant).
	refused bool
}

// yaml11Words are the plain scalars YAML 1.1 (sigs.k8s.io/yaml, kubectl)
// reads as booleans and YAML 1.2 (go.yaml.in/yaml/v3) as strings, and other
// words whose type the two disagree on.
var yaml11Words = []string{
	"yes", "no", "on", "off", "y", "n", "true", "false",
	"Yes", "No", "On", "Off", "Y", "N", "True", "False",
	"YES", "NO", "ON", "OFF", "TRUE", "FALSE",
	"0x1F", "0o17", "017", "1_000", "1e3", ".inf", "-.Inf", ".NaN", "~", "null", "Null", "2001-12-14", "12:30:45", "+1", "0b101",
}

const podHead = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n"

// generatedSeeds cover the YAML and JSON features kubectl's decoder reads:
// quoting styles, YAML 1.1 words, anchors, aliases and merge keys, duplicate
// keys, flow and block styles, JSON streams, Lists, CRLF, BOM and comments.
func generatedSeeds() map[string]seed {
	s := map[string]seed{}
	for i, w := range yaml11Words {
		s[fmt.Sprintf("yaml11-spliced-%02d-%s", i, w)] = seed{src: podHead + "  - name: app\n    image: app\n    command: [\"sh\", \"-c\", \"redis-server --appendonly " + w + "\"]\n"}
		s[fmt.Sprintf("yaml11-args-%02d-%s", i, w)] = seed{src: podHead + "  - name: app\n    image: app\n    command: [sh, -c]\n    args: ['exec_it() { :; }; exec \"$0\" \"$@\"', '" + w + "', \"" + w + "\"]\n"}
	}
	s["issue-redis-appendonly-yes"] = seed{src: podHead + "  - name: redis\n    image: redis:7\n    command: [\"sh\", \"-c\", \"redis-server --appendonly yes\"]\n"}
	long := strings.Repeat("--flag value ", 14)
	s["long-command-folding"] = seed{src: podHead + "  - name: app\n    image: app\n    command: [sh, -c, 'cd /app && run " + long + "']\n---\n" + podHead + "  - name: b\n    image: b\n    command:\n    - sh\n    - -c\n    - cd /app && run " + long + "\n"}
	s["spaces-tabs-unicode"] = seed{src: podHead + "  - name: app\n    image: app\n    command: [sh, -c, \"cd /app &&  run   x  \\t é \\u2028 \"]\n  - name: b\n    image: b\n    command: [sh, -c, \"cd / && run\\n  --more  \"]\n"}
	s["quoting-styles"] = seed{src: podHead + "  - name: 'app'\n    image: \"app:1\"\n    command:\n    - sh\n    - '-c'\n    - >-\n      cd /app &&\n      bundle exec puma\n"}
	s["literal-block"] = seed{src: podHead + "  - name: app\n    image: app\n    command:\n    - sh\n    - -c\n    - |\n      cd /app\n      exec-me --flag on\n"}
	s["comments-everywhere"] = seed{src: "# head\napiVersion: v1 # av\nkind: Pod\n# between\nmetadata: # m\n  name: p\nspec:\n  containers: # list\n  # item\n  - name: app # n\n    image: app\n    command: [sh, -c, 'cd / && run'] # cmd\n# foot\n"}
	s["flow-document"] = seed{src: "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: app, image: app, command: [sh, -c, 'cd / && run yes']}]}}\n"}
	s["anchor-alias-containers"] = seed{src: podHead + "  - &c\n    name: app\n    image: app\n    command: [sh, -c, 'cd / && run']\n  initContainers:\n  - *c\n"}
	s["alias-shared-template"] = seed{src: "apiVersion: v1\nkind: List\nitems:\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: a}\n  spec:\n    selector: {matchLabels: {app: a}}\n    template: &t\n      metadata: {labels: {app: a}}\n      spec:\n        containers: [{name: app, image: app}]\n- apiVersion: apps/v1\n  kind: ReplicaSet\n  metadata: {name: b}\n  spec:\n    selector: {matchLabels: {app: a}}\n    template: *t\n"}
	s["merge-key-container"] = seed{src: "base: &base\n  image: app\n  command: [sh, -c, 'cd / && run']\n  args: [x]\n" + podHead + "  - <<: *base\n    name: app\n"}
	s["merge-key-pod-spec"] = seed{src: "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nx-defaults: &d\n  terminationGracePeriodSeconds: 8\nspec:\n  <<: *d\n  containers: [{name: app, image: app}]\n"}
	s["duplicate-key-command"] = seed{src: podHead + "  - name: app\n    image: app\n    command: [sh, -c, 'cd / && first']\n    command: [sh, -c, 'cd / && second']\n"}
	s["duplicate-key-spec"] = seed{src: "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: old, image: old}]\nspec:\n  containers: [{name: app, image: app, command: [sh, -c, 'cd / && run']}]\n"}
	s["duplicate-key-metadata"] = seed{src: "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {a: b}}\nmetadata: {name: q}\nspec:\n  containers: [{name: app, image: app}]\n"}
	s["json-stream-two-objects"] = seed{src: `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"app","image":"app","command":["sh","-c","cd / && run"]}]}}{"apiVersion":"v1","kind":"Pod","metadata":{"name":"b"},"spec":{"containers":[{"name":"app","image":"app"}]}}`}
	s["json-stream-indented"] = seed{src: "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"ConfigMap\",\n  \"metadata\": {\"name\": \"c\"}\n}\n{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Pod\",\n  \"metadata\": {\"name\": \"b\"},\n  \"spec\": {\"containers\": [{\"name\": \"app\", \"image\": \"app\"}]}\n}\n"}
	s["json-then-yaml"] = seed{src: `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"app","image":"app"}]}}` + "\n---\n" + podHead + "  - name: b\n    image: b\n"}
	s["json-then-short-tail"] = seed{src: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}` + "\nab", refused: true}
	s["json-then-yaml-no-newline"] = seed{src: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}` + "   apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n"}
	s["json-duplicate-keys"] = seed{src: `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"x","image":"x"}]},"spec":{"containers":[{"name":"app","image":"app"}]}}`}
	s["json-big-integers"] = seed{src: `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","labels":{"n":"1"}},"spec":{"activeDeadlineSeconds":9007199254740993,"containers":[{"name":"app","image":"app"}]}}`}
	s["yaml-big-integers"] = seed{src: "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  activeDeadlineSeconds: 9007199254740993\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: app, image: app}]\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {big: 123456789012345678, bigger: 12345678901234567890, f: 1.5}\n"}
	s["big-grace-period"] = seed{src: "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  terminationGracePeriodSeconds: 9007199254740993\n  containers: [{name: app, image: app}]\n"}
	s["list-of-pods-and-deployments"] = seed{src: "apiVersion: v1\nkind: List\nitems:\n- " + indent(podHead+"  - name: app\n    image: app\n", "  ") + "- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: d}\n  spec:\n    selector: {matchLabels: {app: d}}\n    template:\n      metadata: {labels: {app: d}}\n      spec:\n        containers:\n        - name: app\n          image: app\n          command: [sh, -c, 'cd / && run']\n"}
	s["podlist-items-without-kind"] = seed{src: "apiVersion: v1\nkind: PodList\nitems:\n- metadata: {name: a}\n  spec:\n    containers: [{name: app, image: app}]\n"}
	s["list-item-without-apiversion"] = seed{src: "apiVersion: v1\nkind: List\nitems:\n- kind: Pod\n  metadata: {name: a}\n  spec:\n    containers: [{name: app, image: app}]\n", refused: true}
	s["list-item-items-scalar"] = seed{src: "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n  items: 5\n"}
	s["list-items-null"] = seed{src: "apiVersion: v1\nkind: List\nitems: null\n"}
	s["list-item-null"] = seed{src: "apiVersion: v1\nkind: List\nitems: [null]\n", refused: true}
	s["object-without-apiversion"] = seed{src: "kind: Pod\nmetadata: {name: a}\nspec:\n  containers: [{name: app, image: app}]\n"}
	s["list-empty-items"] = seed{src: "apiVersion: v1\nkind: List\nitems: []\n"}
	s["list-nested"] = seed{src: "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: List\n  items:\n  - " + indent(podHead+"  - name: app\n    image: app\n", "    "), refused: true}
	s["custom-job-other-group"] = seed{src: "apiVersion: example.com/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template: 3\n---\n" + podHead + "  - name: app\n    image: app\n"}
	s["old-apiversion-deployment"] = seed{src: "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      containers: [{name: app, image: app}]\n"}
	s["crlf"] = seed{src: strings.ReplaceAll("# c\r\n"+podHead+"  - name: app\n    image: app\n    command: [sh, -c, 'cd / && run']\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n", "\n", "\r\n")}
	s["bom"] = seed{src: "\ufeff" + podHead + "  - name: app\n    image: app\n"}
	s["bom-json"] = seed{src: "\ufeff" + `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"app","image":"app"}]}}`}
	s["separators-and-comments"] = seed{src: "---\n--- # first\n" + podHead + "  - name: app\n    image: app\n--- # second\n# only a comment\n---\n---\nnull\n---\n"}
	s["lone-document-end"] = seed{src: podHead + "  - name: app\n    image: app\n---\n...\n", refused: true}
	s["document-end-marker"] = seed{src: podHead + "  - name: app\n    image: app\n...\nignored: [by kubectl\n"}
	s["invalid-separator"] = seed{src: podHead + "  - name: app\n    image: app\n--- x\n", refused: true}
	s["null-container"] = seed{src: podHead + "  - null\n  - name: app\n    image: app\n", refused: true}
	s["deployment-without-template"] = seed{src: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: 1}\n", refused: true}
	s["deployment-bad-selector"] = seed{src: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: 5\n  template:\n    spec:\n      containers: [{name: app, image: app}]\n", refused: true}
	s["template-without-metadata"] = seed{src: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {app: d}}\n  template:\n    spec:\n      containers: [{name: app, image: app}]\n"}
	s["template-null-metadata"] = seed{src: "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  schedule: '* * * * *'\n  jobTemplate:\n    spec:\n      template:\n        metadata: ~\n        spec:\n          restartPolicy: Never\n          containers: [{name: app, image: app, args: ['on']}]\n"}
	s["tagged-scalars"] = seed{src: podHead + "  - name: !!str app\n    image: app\n    command: [!!str sh, -c, !!str 'cd / && run']\n"}
	s["annotations-yaml11"] = seed{src: "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    podgrace.dev/extend-grace: 'no'\n    other: 'on'\nspec:\n  terminationGracePeriodSeconds: 12\n  containers:\n  - name: app\n    image: app\n"}
	s["indented-sequences"] = seed{src: "apiVersion: v1\nkind: Pod\nmetadata:\n    name: p\nspec:\n    containers:\n        -   name: app\n            image: app\n            command:\n                - sh\n                - -c\n                - cd / && run\n"}
	s["not-an-object"] = seed{src: "- a\n- b\n", refused: true}
	s["missing-kind"] = seed{src: "apiVersion: v1\nmetadata: {name: x}\n", refused: true}
	s["pod-command-bool"] = seed{src: podHead + "  - name: app\n    image: app\n    command: [sh, -c, yes]\n", refused: true}
	s["unknown-fields-kept"] = seed{src: podHead + "  - name: app\n    image: app\n    frobnicate: {x: 1}\n    command: [sh, -c, 'cd / && run']\n  extraSpec: true\nextraTop: [1, 2]\n"}
	s["case-mismatched-field"] = seed{src: podHead + "  - name: app\n    image: app\n    Command: [sh, -c, 'cd / && run']\n"}
	return s
}

// indent indents every line of s but the first by prefix.
func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	return strings.Join(lines, "\n"+prefix) + "\n"
}
