package admissionpolicy

import (
	"math/rand/v2"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"

	"github.com/podgrace/podgrace/pkg/execform"
)

// celRegexFind declares Kubernetes' find and findAll (the API server's CEL
// regex library) for evaluating the policies' CEL outside an API server.
func celRegexFind() []cel.EnvOption {
	re := func(p ref.Val) *regexp.Regexp { return regexp.MustCompile(string(p.(types.String))) }
	return []cel.EnvOption{
		cel.Function("find", cel.MemberOverload("string_find_string", []*cel.Type{cel.StringType, cel.StringType}, cel.StringType,
			cel.BinaryBinding(func(s, p ref.Val) ref.Val {
				return types.String(re(p).FindString(string(s.(types.String))))
			}))),
		cel.Function("findAll", cel.MemberOverload("string_find_all_string", []*cel.Type{cel.StringType, cel.StringType}, cel.ListType(cel.StringType),
			cel.BinaryBinding(func(s, p ref.Val) ref.Val {
				return types.NewStringList(types.DefaultTypeAdapter, re(p).FindAllString(string(s.(types.String)), -1))
			}))),
	}
}

// TestExecPlan evaluates execPlan's CEL (cel-go with the strings extension
// and Kubernetes' find/findAll) on the argvs of the rewrite table, the
// seeds' commands and generated scripts, and holds it to
// execform.Classify, which TestClassify holds to the webhook's parser.
func TestExecPlan(t *testing.T) {
	t.Parallel()
	env, err := cel.NewEnv(append(celRegexFind(), cel.OptionalTypes(), ext.Strings(), cel.Variable("c", cel.DynType))...)
	if err != nil {
		t.Fatal(err)
	}
	ast, iss := env.Compile(expandBind(execPlan("c")))
	if iss.Err() != nil {
		t.Fatal(iss.Err())
	}
	prg, err := env.Program(ast)
	if err != nil {
		t.Fatal(err)
	}
	scripts := []string{"bundle exec puma", "ruby server.rb", "cd /app && bundle exec puma", "./start.sh", "exec puma", "bash -c puma",
		"  puma  \n", "a && b && c", "a&&b", "cd /app\t&&\t./run", "cd /app && cd /b", "trap x && puma", "-x", "FOO=1 puma", "puma || x", "puma; x"}
	words := []string{"puma", "/app/server", "./start.sh", "cd", "echo", "exec", "sh", "if", "FOO=1", "-p", "3000", "--port=8080", "$X", "'q'", "x*"}
	rng := rand.New(rand.NewPCG(24, 2))
	for range 1500 {
		var b strings.Builder
		for i := range 1 + rng.IntN(6) {
			if i > 0 {
				b.WriteString([]string{" ", " ", " && ", "&&", "\t", " || ", "\n"}[rng.IntN(7)])
			}
			b.WriteString(words[rng.IntN(len(words))])
		}
		scripts = append(scripts, []string{"", " ", "\n"}[rng.IntN(3)]+b.String()+[]string{"", "\n"}[rng.IntN(2)])
	}
	counts := map[string]int{}
	for i, s := range scripts {
		shell := []string{"sh", "/bin/sh", "bash", "/usr/bin/bash", "dash", "ash", "zsh"}[i%7]
		for j, layout := range [][2][]string{
			{{shell, "-c", s}, nil}, {{shell, "-c"}, {s}}, {{shell}, {"-c", s}}, {nil, {shell, "-c", s}}, {{shell, "-ec", s}, nil},
			{{"env", shell, "-c", s}, nil}, {{"/app/server", s}, nil},
		} {
			c := map[string]any{}
			if layout[0] != nil {
				c["command"] = layout[0]
			}
			if layout[1] != nil {
				c["args"] = layout[1]
			}
			var defined func(string) bool
			if (i+j)%4 == 0 {
				c["env"] = []map[string]any{{"name": "BASH_ENV", "value": "/etc/profile"}}
				defined = func(n string) bool { return n == "BASH_ENV" }
			}
			shape, want := execform.Classify(execform.Input{Command: layout[0], Args: layout[1], Defined: defined})
			out, _, err := prg.Eval(map[string]any{"c": c})
			if err != nil {
				t.Fatalf("%q %q: %v", layout[0], layout[1], err)
			}
			raw, err := out.ConvertToNative(reflectStrings)
			if err != nil {
				t.Fatal(err)
			}
			got := raw.([]string)
			counts[got[0]]++
			var gotCmd, gotArgs []string
			switch got[0] {
			case execDirect:
				gotCmd = got[1:]
			case execSplice:
				gotCmd, gotArgs = layout[0], layout[1]
				if got[1] == "command" {
					gotCmd = got[2:]
				} else {
					gotArgs = got[2:]
				}
			}
			switch {
			case shape == execform.ShapeOther && (got[0] == execDirect || got[0] == execSplice):
				t.Errorf("%q %q: the CEL rewrites (%q) what Classify calls other", layout[0], layout[1], got)
			case shape != execform.ShapeOther && (got[0] != string(want.Kind) || !slices.Equal(gotCmd, want.Command) || !slices.Equal(gotArgs, want.Args)):
				t.Errorf("%q %q: the CEL gives %q, Classify %s %q %q", layout[0], layout[1], got, want.Kind, want.Command, want.Args)
			case shape == execform.ShapeOther && got[0] == execNone && len(layout[0]) > 0 && slices.Contains(execform.ShapeShells(), pathBase(layout[0][0])):
				t.Errorf("%q %q: a shell wrapper left alone without a warning", layout[0], layout[1])
			}
		}
	}
	t.Logf("%d argvs: %v", len(scripts)*7, counts)
	if counts[execDirect] < 150 || counts[execSplice] < 150 || counts[execOther] < 150 {
		t.Errorf("too few of each outcome to prove anything: %v", counts)
	}
}

var reflectStrings = reflect.TypeFor[[]string]()

func pathBase(p string) string { return path.Base(p) }
