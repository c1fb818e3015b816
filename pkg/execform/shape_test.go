package execform

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// shapeScripts draws scripts around the shapes' edges: literal words,
// paths, builtins, reserved words, assignments, wrappers, quotes and
// expansions, joined by &&, ||, ; or newlines.
func shapeScripts(rng *rand.Rand, n int) []string {
	names := []string{"puma", "bundle", "ruby", "./start.sh", "/app/server", "node", "cd", "echo", "exec", "trap", "sh", "bash", "env",
		"if", "time", "FOO=1", "true", ":", "..", "-x", "migrate", "java", "python3", "%", "a,b", "busybox", "'puma'", "$APP", "puma*"}
	args := []string{"exec", "puma", "server.rb", "-p", "3000", "--port=8080", "/app", "-c", "config.ru", "a=b", "'x y'", "$HOME", "~", "x#y", "{a,b}", "ok"}
	seps := []string{" && ", "&&", " \t&& ", " || ", "; ", "\n", " | "}
	pad := []string{"", "", " ", "\n", "\t", "  \n"}
	var out []string
	for range n {
		var cmds []string
		for range 1 + rng.IntN(3) {
			w := []string{names[rng.IntN(len(names))]}
			for range rng.IntN(4) {
				w = append(w, args[rng.IntN(len(args))])
			}
			cmds = append(cmds, strings.Join(w, []string{" ", "  ", "\t"}[rng.IntN(3)]))
		}
		s := cmds[0]
		for _, c := range cmds[1:] {
			sep := seps[0]
			if rng.IntN(3) == 0 {
				sep = seps[rng.IntN(len(seps))]
			}
			s += sep + c
		}
		out = append(out, pad[rng.IntN(len(pad))]+s+pad[rng.IntN(len(pad))])
	}
	return out
}

// TestClassify: for every argv Classify calls ShapeWords or ShapeChain,
// Rewrite (the webhook's real parser) gives exactly the result Classify
// predicts, which the admission policy's CEL computes the same way: the
// rewrite table, the seeds' commands and generated scripts under every
// shell and argv layout.
func TestClassify(t *testing.T) {
	t.Parallel()
	var inputs []Input
	for _, c := range rewriteCases {
		inputs = append(inputs, c.input())
	}
	seeds := []string{"bundle exec puma", "ruby server.rb", "cd /app && bundle exec puma", "./start.sh", "exec puma", "sh -c 'bash -c puma'"}
	rng := rand.New(rand.NewPCG(24, 1))
	scripts := slices.Concat(seeds, shapeScripts(rng, 1200))
	for i, s := range scripts {
		shell := []string{"sh", "/bin/sh", "bash", "/usr/bin/bash", "dash", "ash", "zsh"}[i%7]
		var defined []string
		if i%5 == 0 {
			defined = []string{"BASH_ENV"}
		}
		for _, in := range []Input{
			{Command: []string{shell, "-c", s}},
			{Command: []string{shell, "-c"}, Args: []string{s}},
			{Command: []string{shell}, Args: []string{"-c", s}},
			{Args: []string{shell, "-c", s}},
			{Command: []string{shell, "-ec", s}},
		} {
			in.Defined = definedSet(defined)
			inputs = append(inputs, in)
		}
	}
	count := map[Shape]int{}
	kinds := map[Kind]int{}
	for _, in := range inputs {
		shape, want := Classify(in)
		count[shape]++
		if shape == ShapeOther {
			continue
		}
		kinds[want.Kind]++
		got := Rewrite(in)
		if got.Kind != want.Kind || !slices.Equal(got.Command, want.Command) || !slices.Equal(got.Args, want.Args) {
			t.Errorf("%s %q %q: Classify predicts %s %q %q, Rewrite gives %s %q %q (%s)", shape, in.Command, in.Args,
				want.Kind, want.Command, want.Args, got.Kind, got.Command, got.Args, got.Reason)
		}
	}
	t.Logf("%d argvs: %v; predicted %v", len(inputs), count, kinds)
	if count[ShapeWords] < 100 || count[ShapeChain] < 100 || kinds[KindDirect] < 50 || kinds[KindExec] < 100 {
		t.Errorf("too few shaped argvs to prove anything: %v %v", count, kinds)
	}
	for _, s := range []string{"bundle exec puma", "cd /app && bundle exec puma"} {
		if shape, _ := Classify(Input{Command: []string{"sh", "-c", s}}); shape == ShapeOther {
			t.Errorf("the seeds' command %q is not shaped", s)
		}
	}
}
