package execform

import (
	"strings"
	"unicode/utf8"
)

// EscapeForKubelet escapes s so that the kubelet's $(NAME) expansion hands it
// to the container unchanged: every `$` becomes `$$`. Strings copied from an
// image config into a pod's command or args need it, because the image's
// `$(date)` or `$$` mean something else once they are pod text.
func EscapeForKubelet(s string) string {
	return strings.ReplaceAll(s, "$", "$$")
}

// kubeletView is one command or args element as the container process will
// receive it, after the kubelet's expansion, with a map back to the pod text.
//
// The map is what lets a rewrite edit the pod text (where `$$`, `$(NAME)`
// must stay as the user wrote them) while deciding on the text the shell
// parses: origin[i] is the offset, in the pod text, of the token that
// produced byte i of text (origin[len(text)] is len(pod text)). A nil
// origin is the identity: the text holds no `$` and is the pod text.
type kubeletView struct {
	text   string
	origin []int
	// refs are the [start, end) spans in text of references to defined
	// variables, so that callers can tell the kubelet's substitutions from
	// the script's own expansions.
	refs [][2]int
}

// viewForShell builds the kubeletView the shell parses. A defined `$(NAME)`
// is replaced by refPlaceholder: its value is unknown here (it may come from
// a Secret or the downward API), and the closest the parser can come to
// "some word text decided at run time" is a parameter expansion. The kubelet
// in fact pastes the value into the script text before the shell parses it,
// so a value holding shell syntax (`;`, `&`, quotes) would change the
// script's structure; the rewrite assumes values are plain words and refuses
// to put `exec` in front of a command name that is a reference.
func viewForShell(s string, defined func(string) bool) kubeletView {
	return expandKubelet(s, func(name string) (string, bool) {
		if defined != nil && defined(name) {
			return refPlaceholder, true
		}
		return "", false
	})
}

// refPlaceholder stands for a defined `$(NAME)` in the text given to the
// parser. Any valid parameter expansion would do; a fixed name keeps
// variable names the shell grammar rejects (Kubernetes allows `my.var`)
// parseable.
const refPlaceholder = "${PODGRACE_REF}"

// expandKubelet applies the kubelet's expansion (k8s.io/kubernetes
// third_party/forked/golang/expansion.Expand) to s, asking value for each
// `$(NAME)`. The rules, exactly as the kubelet has them:
//   - `$$` becomes `$`;
//   - `$(NAME)` up to the first `)` is replaced by NAME's value when NAME is
//     defined, and kept as written otherwise;
//   - `$(` with no `)` after it, and `$` followed by any other character,
//     are kept (the character after `$` is consumed as one rune, which turns
//     an invalid UTF-8 byte there into U+FFFD);
//   - a `$` at the end is kept.
func expandKubelet(s string, value func(name string) (string, bool)) kubeletView {
	if strings.IndexByte(s, '$') < 0 {
		return kubeletView{text: s} // most words and scripts: nothing to expand or map
	}
	var b strings.Builder
	v := kubeletView{origin: make([]int, 0, len(s)+1)}
	// keep copies pod text that reaches the process as written.
	keep := func(from, to int) {
		b.WriteString(s[from:to])
		for i := from; i < to; i++ {
			v.origin = append(v.origin, i)
		}
	}
	// put writes text that replaces the token starting at pod offset from.
	put := func(text string, from int) {
		b.WriteString(text)
		for range len(text) {
			v.origin = append(v.origin, from)
		}
	}
	for i := 0; i < len(s); {
		if s[i] != '$' || i+1 == len(s) {
			keep(i, i+1)
			i++
			continue
		}
		switch s[i+1] {
		case '$':
			put("$", i)
			i += 2
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				keep(i, i+2)
				i += 2
				continue
			}
			next := i + 3 + end
			if val, ok := value(s[i+2 : next-1]); ok {
				start := b.Len()
				put(val, i)
				v.refs = append(v.refs, [2]int{start, b.Len()})
			} else {
				keep(i, next)
			}
			i = next
		default:
			r, size := utf8.DecodeRuneInString(s[i+1:])
			if r == utf8.RuneError && size == 1 {
				put("$"+string(r), i)
			} else {
				keep(i, i+1+size)
			}
			i += 1 + size
		}
	}
	v.text = b.String()
	v.origin = append(v.origin, len(s))
	return v
}

// pos is the offset in the pod text of the token that produced byte i of
// the text (i may be len(text)).
func (v kubeletView) pos(i int) int {
	if v.origin == nil {
		return i
	}
	return v.origin[i]
}

// hasRef reports whether a defined `$(NAME)` overlaps text[start:end].
func (v kubeletView) hasRef(start, end int) bool {
	for _, r := range v.refs {
		if r[0] < end && start < r[1] {
			return true
		}
	}
	return false
}
