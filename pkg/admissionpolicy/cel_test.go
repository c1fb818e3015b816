package admissionpolicy

import "testing"

// TestExpandBind: cel.bind (absent from the admission policy environment)
// becomes a one-element map, nested binds and string literals included.
func TestExpandBind(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`cel.bind(x, 1 + 2, x * x)`:                           `[1 + 2].map(x, x * x)[0]`,
		`cel.bind(a, f(1, 2), cel.bind(b, [a, 3], b.size()))`: `[f(1, 2)].map(a, [[a, 3]].map(b, b.size())[0])[0]`,
		`'cel.bind(' + cel.bind(s, 'a,b)', s)`:                `'cel.bind(' + ['a,b)'].map(s, s)[0]`,
		`no binds`:                                            `no binds`,
	} {
		if got := expandBind(in); got != want {
			t.Errorf("expandBind(%q) = %q, want %q", in, got, want)
		}
	}
}
