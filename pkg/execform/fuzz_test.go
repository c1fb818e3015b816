package execform

import (
	"slices"
	"strings"
	"testing"
)

// FuzzRewrite checks the invariants of checkInvariants on arbitrary argvs:
// no panic, KindNone leaves the fields alone, a rewrite re-parses as
// already-exec and a second Rewrite changes nothing. Each argument is a list
// of words joined by NUL (command, args, defined variable names); the seeds
// are the table of TestRewrite.
func FuzzRewrite(f *testing.F) {
	join := func(words []string) string { return strings.Join(words, "\x00") }
	for _, c := range rewriteCases {
		f.Add(join(c.command), join(c.args), join(c.defined))
	}
	f.Fuzz(func(t *testing.T, command, args, defined string) {
		split := func(s string) []string {
			if s == "" {
				return nil
			}
			return strings.Split(s, "\x00")
		}
		in := Input{Command: split(command), Args: split(args), Defined: definedSet(split(defined))}
		got := Rewrite(in)
		if got.Kind == KindNone && !slices.Contains(allReasons, got.Reason) {
			t.Fatalf("Rewrite(%q, %q): undeclared reason %q", in.Command, in.Args, got.Reason)
		}
		checkInvariants(t, in, got)
	})
}
